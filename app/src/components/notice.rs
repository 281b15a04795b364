use crate::engine::Engine;
use leptos::prelude::*;

/// The engine's notice (a refused message, a device or connection problem) as an
/// alert, until dismissed or the next action clears it.
#[component]
pub fn Notice(
    /// Placement around the alert (margins, width).
    #[prop(optional)]
    class: &'static str,
) -> impl IntoView {
    let engine = Engine::expect();
    view! {
        <Show when=move || engine.notice.with(Option::is_some)>
            <div class=class>
                <div role="alert" class="alert flex items-start justify-between gap-3" data-testid="notice">
                    <p class="font-semibold">{move || engine.notice.get()}</p>
                    <button
                        type="button"
                        class="alert-close focus-ring"
                        aria-label="Dismiss"
                        on:click=move |_| engine.dismiss_notice()
                    >
                        "×"
                    </button>
                </div>
            </div>
        </Show>
    }
}
