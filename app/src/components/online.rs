use crate::engine::{Engine, Link, Transport};
use leptos::prelude::*;

/// "1,234 online · 321 chatting", live from the server.
#[component]
pub fn OnlineBadge() -> impl IntoView {
    let engine = Engine::expect();
    let text = move || match (engine.link.online.get(), engine.link.state.get()) {
        (_, Link::Closed) => "Disconnected".to_string(),
        (Some(c), Link::Connected) => {
            format!("{} online · {} chatting", group(c.count), group(c.chatting))
        }
        (Some(c), _) => format!("{} online · reconnecting…", group(c.count)),
        (None, Link::Reconnecting) => "Can't reach the server, retrying…".to_string(),
        (None, _) => "Connecting…".to_string(),
    };
    let live = move || engine.link.state.get() == Link::Connected;
    let fallback = move || engine.link.transport.get() == Transport::Fallback;
    view! {
        <p
            class="inline-flex items-center gap-2 whitespace-nowrap border-2 border-ink bg-paper px-3 py-1 text-sm font-semibold shadow-hard-sm rounded-sm"
            data-testid="online"
            data-count=move || engine.link.online.get().map(|c| c.count.to_string())
            data-transport=move || match engine.link.transport.get() {
                Transport::WebSocket => "websocket",
                Transport::Fallback => "fallback",
            }
            title=move || {
                fallback()
                    .then_some("WebSockets are blocked on this network: connected over plain HTTP (a little slower)")
            }
        >
            <span
                class="size-2.5 rounded-full border border-ink"
                class=("bg-teal", live)
                class=("bg-coral", move || !live())
                aria-hidden="true"
            ></span>
            {text}
            <Show when=fallback>
                <span class="border-l-2 border-ink pl-2 font-normal" data-testid="transport">"via HTTP"</span>
            </Show>
        </p>
    }
}

/// Thousands separators, locale-independent so server and browser render the same.
fn group(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1_000), "1,000");
        assert_eq!(super::group(1_234_567), "1,234,567");
    }
}
