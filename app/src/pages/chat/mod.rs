use crate::components::{Logo, Notice, OnlineBadge};
use crate::engine::{Author, Engine, Link, MediaProblem, Phase, Veil};
use crate::platform;
use leptos::prelude::*;
use protocol::{LeftReason, Mode, Preferences};

mod controls;

use controls::Controls;

/// The chat screen: the stranger's video (video mode), the text chat, the controls.
#[component]
pub fn Chat() -> impl IntoView {
    let engine = Engine::expect();
    let mode = move || engine.chat.prefs.get().map_or(Mode::Text, |p| p.mode);
    let video = move || mode() == Mode::Video;
    let phase_name = move || phase_key(&engine.chat.phase.get());
    // Leaving this screen (the logo, Back) ends the chat: no match, peer connection
    // or camera keeps running behind the landing page.
    on_cleanup(move || engine.stop());

    view! {
        <div
            class="flex min-h-dvh flex-col md:h-dvh"
            data-testid="chat"
            data-remote-candidates=move || engine.media.remote_candidate_types.get().join(" ")
            data-phase=phase_name data-mode=move || match mode() { Mode::Video => "video", Mode::Text => "text" }>
            <header class="flex flex-wrap items-center justify-between gap-3 border-b-2 border-ink px-4 py-3">
                <h1 class="sr-only">"Chat with a stranger"</h1>
                <Logo />
                <div class="flex flex-wrap items-center gap-2">
                    <ConnectionBadge />
                    <OnlineBadge />
                </div>
            </header>
            <Notice class="mx-4 mt-4" />
            <MediaTrouble />
            <main
                class="grid flex-1 grid-cols-[minmax(0,1fr)] gap-4 p-4 md:min-h-0"
                class=("md:grid-cols-[minmax(0,1fr)_24rem]", video)
                // One class per toggle: the browser's classList takes no spaces.
                class=("mx-auto", move || !video())
                class=("w-full", move || !video())
                class=("max-w-3xl", move || !video())
            >
                <Show when=video>
                    <VideoStage />
                </Show>
                <ChatPanel />
            </main>
            <Controls />
        </div>
    }
}

/// A stable name per phase, for styling and tests.
fn phase_key(phase: &Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::AskingMedia => "asking_media",
        Phase::Waiting => "waiting",
        Phase::Connecting => "connecting",
        Phase::Connected => "connected",
        Phase::PeerReconnecting => "peer_reconnecting",
        Phase::PeerLeft(_) => "peer_left",
        Phase::Blocked => "blocked",
        Phase::Banned { .. } => "banned",
    }
}

/// The one-line status, read out by screen readers as it changes.
fn status_text(engine: Engine) -> String {
    if engine.link.state.get() == Link::Reconnecting {
        return "Connection to the server lost. Reconnecting…".into();
    }
    if engine.link.state.get() == Link::Restarting {
        return "The server is restarting. Reconnecting…".into();
    }
    match engine.chat.phase.get() {
        Phase::Idle => "You're not chatting. Press Start when you're ready.".into(),
        Phase::AskingMedia => "Waiting for camera and microphone permission…".into(),
        Phase::Waiting => {
            let with_interests = engine.chat.prefs.get().is_some_and(|p| !p.interests.is_empty());
            if with_interests {
                "Looking for someone who shares your interests…".into()
            } else {
                "Looking for someone…".into()
            }
        }
        Phase::Connecting => "Connecting…".into(),
        Phase::Connected => match engine.chat.current.get() {
            Some(m) => crate::engine::met_line(&m.common_interests, m.shared_country.as_deref()),
            None => crate::engine::met_line(&[], None),
        },
        Phase::PeerReconnecting => "Stranger is reconnecting…".into(),
        Phase::PeerLeft(LeftReason::Banned) => "Stranger was removed for breaking the rules.".into(),
        Phase::PeerLeft(_) => "Stranger has disconnected.".into(),
        Phase::Blocked => "You blocked this stranger. You won't be matched again.".into(),
        Phase::Banned { reason, until } => super::ban_text(&reason, &until),
    }
}

#[component]
fn MediaTrouble() -> impl IntoView {
    let engine = Engine::expect();
    let use_text = move |_| {
        let prefs = engine.chat.prefs.get_untracked().unwrap_or_else(|| Preferences::new(Mode::Text));
        engine.start(Preferences { mode: Mode::Text, ..prefs });
    };
    let retry = move |_| {
        if let Some(prefs) = engine.chat.prefs.get_untracked() {
            engine.start(prefs);
        }
    };
    view! {
        <Show when=move || engine.media.problem.get().is_some()>
            <div role="alert" class="alert mx-4 mt-4" data-testid="media-problem">
                <p class="font-display font-extrabold">
                    {move || match engine.media.problem.get() {
                        Some(MediaProblem::Denied) => "Camera and microphone access was blocked.".to_string(),
                        Some(MediaProblem::Missing) => "No camera or microphone was found.".to_string(),
                        Some(MediaProblem::Unavailable(why)) => format!("Your camera or microphone can't be used right now ({why})."),
                        Some(MediaProblem::NoWebRtc) => "This browser can't do video chat.".to_string(),
                        None => String::new(),
                    }}
                </p>
                <p class="mt-1 text-sm">"You can still talk to strangers by text, or allow access in your browser's site settings and try again."</p>
                <div class="mt-3 flex flex-wrap gap-3">
                    <button type="button" class="btn btn-primary" on:click=use_text>"Use text chat instead"</button>
                    <Show when=move || !matches!(engine.media.problem.get(), Some(MediaProblem::NoWebRtc))>
                        <button type="button" class="btn bg-paper text-ink" on:click=retry>"Try again"</button>
                    </Show>
                </div>
            </div>
        </Show>
    }
}

#[component]
fn VideoStage() -> impl IntoView {
    let engine = Engine::expect();
    let remote = NodeRef::<leptos::html::Video>::new();
    let local = NodeRef::<leptos::html::Video>::new();
    let stage = NodeRef::<leptos::html::Section>::new();
    // Moderation found the stranger's video may break the rules.
    let veiled = move || engine.moderation.veil.get().hides();
    // Set when the browser refused to play the stranger's audio without a click
    // (e.g. after a reload): the video plays muted and a button offers the sound.
    let needs_unmute = RwSignal::new(false);
    Effect::new(move |_| {
        engine.media.rev.track();
        if let Some(v) = remote.get() {
            platform::show_remote_video(engine, &v, move || needs_unmute.set(true));
        }
        if let Some(v) = local.get() {
            platform::show_local_video(engine, &v);
        }
    });
    on_cleanup(move || platform::forget_videos(engine));
    let overlay = move || match engine.chat.phase.get() {
        Phase::Connected => None,
        Phase::Waiting => Some(("Looking for someone…", "bg-yellow")),
        Phase::AskingMedia => Some(("Allow camera and microphone…", "bg-yellow")),
        Phase::Connecting => Some(("Connecting…", "bg-teal")),
        Phase::PeerReconnecting => Some(("Stranger is reconnecting…", "bg-yellow")),
        Phase::PeerLeft(LeftReason::Banned) => Some(("Stranger was removed for breaking the rules.", "bg-coral")),
        Phase::PeerLeft(_) => Some(("Stranger has disconnected.", "bg-coral")),
        Phase::Blocked => Some(("You blocked this stranger.", "bg-coral")),
        Phase::Idle => Some(("Not chatting", "bg-paper")),
        Phase::Banned { .. } => Some(("Banned", "bg-coral")),
    };
    view! {
        <section
            node_ref=stage
            class="relative min-h-[45vh] overflow-hidden border-4 border-ink bg-ink shadow-hard-lg rounded-sm focus-ring md:min-h-0"
            aria-label="Video"
            tabindex="-1"
        >
            <video
                node_ref=remote
                class="absolute inset-0 h-full w-full object-cover"
                // Blurred hard and dimmed, scaled so the blur's soft edge stays outside.
                class=("blur-3xl", veiled)
                class=("brightness-50", veiled)
                class=("scale-110", veiled)
                data-hidden=move || veiled().then_some("true")
                autoplay=true
                playsinline=true
                data-testid="remote-video"
                aria-label="The stranger's video"
            ></video>
            {move || overlay().map(|(text, tone)| view! {
                <div class="absolute inset-0 flex items-center justify-center bg-ink/80">
                    <p class=format!("border-2 border-ink px-4 py-2 font-display text-lg font-extrabold text-onaccent shadow-hard rounded-sm {tone}")>
                        {text}
                    </p>
                </div>
            })}
            <Show when=move || veiled() && overlay().is_none()>
                <PeerHidden stage />
            </Show>
            // Only over a stranger's video: not over "Banned", "Looking for someone…" and
            // the like (the element stays muted until tapped, so it comes back with the
            // next stranger).
            <Show when=move || needs_unmute.get() && overlay().is_none()>
                <button
                    type="button"
                    class="btn btn-primary absolute left-3 top-3"
                    on:click=move |_| {
                        if let Some(v) = remote.get() {
                            v.set_muted(false);
                        }
                        needs_unmute.set(false);
                    }
                >
                    "Tap to hear the stranger"
                </button>
            </Show>
            <video
                node_ref=local
                class="absolute bottom-3 right-3 w-28 -scale-x-100 border-2 border-paper bg-ink shadow-hard-sm rounded-sm sm:w-40"
                class=("opacity-40", move || engine.media.camera_off.get())
                autoplay=true
                playsinline=true
                muted=true
                data-testid="local-video"
                aria-label="Your camera (mirrored)"
            ></video>
        </section>
    }
}

/// Over the stranger's blurred video: why it is hidden, "Show anyway" and "Report".
/// It takes no focus when it appears (the user may be typing); it is announced.
#[component]
fn PeerHidden(stage: NodeRef<leptos::html::Section>) -> impl IntoView {
    let engine = Engine::expect();
    let show_button = NodeRef::<leptos::html::Button>::new();
    let reported = move || matches!(engine.moderation.veil.get(), Veil::Hidden { reported: true });
    let show_anyway = move |_| {
        engine.show_anyway();
        // The overlay goes with the focused button: keep focus on the video.
        if let Some(stage) = stage.get_untracked() {
            let _ = stage.focus();
        }
    };
    let report = move |_| {
        engine.report_hidden();
        // The pressed button is now disabled: focus moves to the other choice.
        if let Some(button) = show_button.get_untracked() {
            let _ = button.focus();
        }
    };
    view! {
        <div class="absolute inset-0 flex items-center justify-center p-4" data-testid="peer-hidden">
            <div class="max-w-sm border-2 border-ink bg-paper p-4 text-ink shadow-hard rounded-sm">
                <p class="font-display text-lg font-extrabold" role="alert" aria-live="assertive">
                    "This video was hidden because it may break the rules."
                </p>
                <div class="mt-3 flex flex-wrap gap-3">
                    <button
                        type="button"
                        class="btn bg-paper text-ink"
                        node_ref=show_button
                        data-testid="show-anyway"
                        on:click=show_anyway
                    >
                        "Show anyway"
                    </button>
                    <button
                        type="button"
                        class="btn btn-danger"
                        data-testid="report-hidden"
                        prop:disabled=reported
                        on:click=report
                    >
                        {move || if reported() { "Reported" } else { "Report" }}
                    </button>
                </div>
            </div>
        </div>
    }
}

#[component]
fn ChatPanel() -> impl IntoView {
    let engine = Engine::expect();
    view! {
        <section class="flex min-h-[18rem] flex-col border-2 border-ink bg-paper shadow-hard rounded-sm md:min-h-0" aria-label="Text chat">
            <p class="border-b-2 border-ink px-4 py-2 text-sm font-semibold" role="status" aria-live="polite" data-testid="status">
                {move || status_text(engine)}
            </p>
            <ChatLog />
            <p class="h-6 px-4 text-sm italic opacity-70" aria-live="polite" data-testid="typing">
                {move || engine.chat.peer_typing.get().then_some("Stranger is typing…")}
            </p>
            <Composer />
        </section>
    }
}

/// The conversation, newest line in view.
#[component]
fn ChatLog() -> impl IntoView {
    let engine = Engine::expect();
    let log_ref = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        engine.chat.log.track();
        engine.chat.peer_typing.track();
        if let Some(el) = log_ref.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });
    view! {
        <div node_ref=log_ref class="flex-1 overflow-y-auto px-4 py-3" role="log" aria-live="polite" aria-label="Messages" data-testid="log">
            <ol class="space-y-2">
                <For each=move || engine.chat.log.get() key=|line| line.seq let:line>
                    {match line.author {
                        Author::System => view! { <li class="text-center text-sm italic opacity-70" data-author="system">{line.text}</li> }.into_any(),
                        who => {
                            // Ours on the right in teal, theirs on the left in yellow.
                            let (author, side, colour, prefix) = match who {
                                Author::Me => ("me", "justify-end", "bg-teal", "You: "),
                                _ => ("stranger", "justify-start", "bg-yellow", "Stranger: "),
                            };
                            view! {
                                <li class=format!("flex {side}") data-author=author>
                                    <span class=format!("max-w-[85%] whitespace-pre-wrap break-words border-2 border-ink {colour} px-3 py-1.5 text-onaccent rounded-sm")>
                                        <span class="sr-only">{prefix}</span>{line.text}
                                    </span>
                                </li>
                            }.into_any()
                        }
                    }}
                </For>
            </ol>
        </div>
    }
}

/// The message input: closed while there is nobody to hear it, and it tells the
/// stranger we are typing (until 3 s without a key).
#[component]
fn Composer() -> impl IntoView {
    let engine = Engine::expect();
    let draft = RwSignal::new(String::new());
    let typing_sent = StoredValue::new(false);
    // Why the input is closed, if it is: a line must never vanish unsent.
    let closed_because = move || {
        if matches!(engine.chat.phase.get(), Phase::Banned { .. }) {
            Some("You can't chat right now")
        } else if engine.chat.current.get().is_none() {
            Some("Not matched yet")
        } else if engine.link.state.get() != Link::Connected {
            Some("Reconnecting to the server…")
        } else if engine.chat.phase.get() == Phase::PeerReconnecting {
            Some("Waiting for the stranger to come back…")
        } else {
            None
        }
    };
    let can_chat = move || closed_because().is_none();
    let stop_typing = move || {
        if typing_sent.get_value() {
            typing_sent.set_value(false);
            engine.typing(false);
        }
    };
    let idle_timer = StoredValue::new_local(None::<TimeoutHandle>);
    let on_input = move |ev: leptos::ev::Event| {
        draft.set(event_target_value(&ev));
        if !typing_sent.get_value() {
            typing_sent.set_value(true);
            engine.typing(true);
        }
        if let Some(h) = idle_timer.get_value() {
            h.clear();
        }
        idle_timer.set_value(set_timeout_with_handle(stop_typing, std::time::Duration::from_secs(3)).ok());
    };
    on_cleanup(move || {
        if let Some(h) = idle_timer.get_value() {
            h.clear();
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if engine.say(&draft.get_untracked()) {
            typing_sent.set_value(false);
            draft.set(String::new());
        }
    };
    view! {
        <form class="flex gap-2 border-t-2 border-ink p-3" on:submit=submit>
            <label for="message" class="sr-only">"Message"</label>
            <input
                id="message"
                type="text"
                autocomplete="off"
                maxlength=protocol::limits::MAX_CHAT_CHARS.to_string()
                placeholder=move || closed_because().unwrap_or("Type a message…")
                class="min-w-0 flex-1 border-2 border-ink bg-paper px-3 py-2 rounded-sm focus-ring"
                prop:value=move || draft.get()
                prop:disabled=move || !can_chat()
                on:input=on_input
            />
            <button type="submit" class="btn btn-primary py-2" prop:disabled=move || !can_chat()>"Send"</button>
        </form>
    }
}

/// "direct · 24 ms · 1.2 Mbps" or "relayed · …", from getStats.
#[component]
fn ConnectionBadge() -> impl IntoView {
    let engine = Engine::expect();
    view! {
        <Show when=move || engine.media.stats.get().is_some() && engine.chat.phase.get() == Phase::Connected>
            <p
                class="inline-flex items-center gap-2 whitespace-nowrap border-2 border-ink px-2 py-1 text-xs font-semibold rounded-sm"
                data-testid="conn-badge"
                data-relayed=move || engine.media.stats.get().map(|s| s.relayed.to_string())
                data-kbps=move || engine.media.stats.get().and_then(|s| s.inbound_kbps).map(|k| format!("{k:.1}"))
            >
                {move || {
                    let s = engine.media.stats.get().unwrap_or_default();
                    let mut parts = vec![if s.relayed { "relayed".to_string() } else { "direct".to_string() }];
                    if let Some(rtt) = s.rtt_ms { parts.push(format!("{rtt:.0} ms")); }
                    if let Some(kbps) = s.inbound_kbps {
                        parts.push(if kbps >= 1000.0 { format!("{:.1} Mbps", kbps / 1000.0) } else { format!("{kbps:.0} kbps") });
                    }
                    parts.join(" · ")
                }}
            </p>
        </Show>
    }
}
