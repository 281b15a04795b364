//! The chat controls: one row on any screen. Next is the largest target; the rest are
//! icon buttons on phones (each with its name as label and tooltip) and icon and text
//! from `sm` up. Camera and microphone choice and auto-next sit in a small settings
//! popover.

use crate::engine::{Device, DeviceKind, Engine, Phase};
use crate::platform;
use leptos::prelude::*;
use protocol::{MatchId, Mode, ReportReason};
use std::time::Duration;

/// How long "auto-next" waits after the stranger leaves.
const AUTO_NEXT_SECS: u32 = 3;
/// How long Next (or Esc) waits for the second press that confirms a skip.
const CONFIRM_NEXT: Duration = Duration::from_secs(3);

/// Next's state: the skip that waits for a second press, and the auto-next countdown.
#[derive(Clone, Copy)]
struct NextFlow {
    engine: Engine,
    /// The match whose skip waits for a second press: the question belongs to that
    /// match only, and it expires.
    confirm_for: RwSignal<Option<MatchId>>,
    confirm_timer: StoredValue<Option<TimeoutHandle>>,
    countdown: RwSignal<Option<u32>>,
    /// The report menu is open (Next and Esc close it).
    report_open: RwSignal<bool>,
}

impl NextFlow {
    fn new(engine: Engine) -> Self {
        Self {
            engine,
            confirm_for: RwSignal::new(None),
            confirm_timer: StoredValue::new(None),
            countdown: RwSignal::new(None),
            report_open: RwSignal::new(false),
        }
    }

    fn chatting(self) -> bool {
        matches!(self.engine.chat.phase.get(), Phase::Connecting | Phase::Connected | Phase::PeerReconnecting)
    }

    fn confirming(self) -> bool {
        self.chatting()
            && self
                .confirm_for
                .get()
                .is_some_and(|id| self.engine.chat.current.with(|m| m.as_ref().is_some_and(|m| m.id == id)))
    }

    fn enabled(self) -> bool {
        self.engine.can_act() && !matches!(self.engine.chat.phase.get(), Phase::Waiting | Phase::AskingMedia)
    }

    fn clear_confirm(self) {
        if let Some(h) = self.confirm_timer.get_value() {
            h.clear();
        }
        self.confirm_for.set(None);
    }

    /// Next now: the next stranger, or Start again from idle.
    fn go(self) {
        self.clear_confirm();
        self.countdown.set(None);
        self.report_open.set(false);
        match self.engine.chat.phase.get_untracked() {
            Phase::Idle => {
                if let Some(prefs) = self.engine.chat.prefs.get_untracked() {
                    self.engine.start(prefs);
                }
            }
            _ => self.engine.next(),
        }
    }

    /// Next or Esc: skip, with a second press to confirm while chatting (as on Omegle).
    fn press(self) {
        untrack(|| {
            if !self.enabled() {
                return;
            }
            if self.chatting() && !self.confirming() {
                self.clear_confirm();
                self.confirm_for.set(self.engine.chat.current.get().map(|m| m.id));
                let expire = move || self.confirm_for.set(None);
                self.confirm_timer.set_value(set_timeout_with_handle(expire, CONFIRM_NEXT).ok());
            } else {
                self.go();
            }
        })
    }

    fn label(self) -> String {
        if self.confirming() {
            return "Really skip? (Esc)".to_string();
        }
        match (self.engine.chat.phase.get(), self.countdown.get()) {
            (_, Some(n)) => format!("Next in {n}…"),
            (Phase::Idle, _) => "Start".to_string(),
            (Phase::PeerLeft(_) | Phase::Blocked, _) => "New chat".to_string(),
            _ => "Next".to_string(),
        }
    }

    /// Counts down after the stranger leaves (with auto-next on), unless the user acts first.
    fn run_countdown(self) {
        Effect::new(move |_| {
            let left = matches!(self.engine.chat.phase.get(), Phase::PeerLeft(_)) && self.engine.chat.auto_next.get();
            self.countdown.set(left.then_some(AUTO_NEXT_SECS));
        });
        let tick = StoredValue::new(None::<TimeoutHandle>);
        let clear_tick = move || {
            if let Some(h) = tick.get_value() {
                h.clear();
            }
        };
        Effect::new(move |_| {
            clear_tick();
            let next_tick = self.countdown.get().and_then(|n| {
                let fire = move || if n <= 1 { self.go() } else { self.countdown.set(Some(n - 1)) };
                set_timeout_with_handle(fire, Duration::from_secs(1)).ok()
            });
            tick.set_value(next_tick);
        });
        on_cleanup(move || {
            clear_tick();
            if let Some(h) = self.confirm_timer.get_value() {
                h.clear();
            }
        });
    }
}

#[component]
pub fn Controls() -> impl IntoView {
    let engine = Engine::expect();
    let flow = NextFlow::new(engine);
    flow.run_countdown();
    let video = move || engine.chat.prefs.get().is_some_and(|p| p.mode == Mode::Video);
    let report_button = NodeRef::<leptos::html::Button>::new();
    // Esc: closes the report menu if it is open (and does not skip), else works as Next.
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() != "Escape" {
            return;
        }
        ev.prevent_default();
        if flow.report_open.get_untracked() {
            flow.report_open.set(false);
            if let Some(button) = report_button.get_untracked() {
                let _ = button.focus();
            }
        } else {
            flow.press();
        }
    });
    on_cleanup(move || handle.remove());
    view! {
        <footer class="controls sticky bottom-0 border-t-2 border-ink bg-paper px-3 py-3 sm:px-4">
            // Popovers open above the row, aligned to its right edge, whatever opened them.
            <div class="relative mx-auto flex max-w-5xl items-center gap-1 sm:gap-2">
                <NextButton flow />
                <StopButton flow />
                <Show when=video>
                    <MediaToggles />
                </Show>
                <div class="ml-auto flex items-center gap-1 sm:gap-2">
                    <Settings video=Signal::derive(video) />
                    <ReportMenu flow button=report_button />
                    <BlockButton flow />
                </div>
            </div>
        </footer>
    }
}

#[component]
fn NextButton(flow: NextFlow) -> impl IntoView {
    view! {
        <button
            type="button"
            class="btn btn-primary min-w-16 flex-1 truncate px-3 sm:min-w-28 sm:flex-none sm:px-5"
            data-testid="next"
            on:click=move |_| flow.press()
            prop:disabled=move || !flow.enabled()
            aria-keyshortcuts="Escape"
        >
            {move || flow.label()}
        </button>
    }
}

#[component]
fn StopButton(flow: NextFlow) -> impl IntoView {
    let engine = flow.engine;
    view! {
        <IconButton
            label=Signal::stored("Stop")
            class="btn-danger"
            testid="stop"
            disabled=Signal::derive(move || !engine.can_act() || engine.chat.phase.get() == Phase::Idle)
            on_click=move |()| {
                flow.countdown.set(None);
                engine.stop();
            }
        >
            <rect x="6" y="6" width="12" height="12" />
        </IconButton>
    }
}

/// Microphone and camera on and off.
#[component]
fn MediaToggles() -> impl IntoView {
    let engine = Engine::expect();
    view! {
        <DeviceToggle
            off=engine.media.mic_muted
            labels=("Mute mic", "Unmute mic")
            on_click=move |()| engine.toggle_mic()
            slash="M3 3l18 18"
        >
            <path d="M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z" />
            <path d="M5 11a7 7 0 0 0 14 0M12 18v3" />
        </DeviceToggle>
        <DeviceToggle
            off=engine.media.camera_off
            labels=("Camera off", "Camera on")
            on_click=move |()| engine.toggle_camera()
            slash="M2 3l20 18"
        >
            <path d="M3 7h12v10H3z" />
            <path d="M15 11l6-3v8l-6-3" />
        </DeviceToggle>
    }
}

/// One device's switch: pressed while the device is off, its icon then struck
/// through by `slash`; `labels` are (while on, while off).
#[component]
fn DeviceToggle(
    off: ReadSignal<bool>,
    labels: (&'static str, &'static str),
    #[prop(into)] on_click: Callback<()>,
    slash: &'static str,
    children: Children,
) -> impl IntoView {
    let label = Signal::derive(move || if off.get() { labels.1 } else { labels.0 });
    view! {
        <IconButton label pressed=off.into() on_click>
            {children()}
            <Show when=move || off.get()>
                <path d=slash />
            </Show>
        </IconButton>
    }
}

/// A gear that opens auto-next and, for video, the camera and microphone choice.
#[component]
fn Settings(video: Signal<bool>) -> impl IntoView {
    let engine = Engine::expect();
    let open = RwSignal::new(false);
    view! {
        <div>
            <IconButton
                label=Signal::stored("Settings")
                expanded=Signal::derive(move || open.get())
                controls="chat-settings"
                on_click=move |()| open.update(|o| *o = !*o)
            >
                <circle cx="12" cy="12" r="3" />
                <path d="M12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1 7 17M17 7l2.1-2.1" />
            </IconButton>
            <Show when=move || open.get()>
                <div
                    id="chat-settings"
                    role="group"
                    aria-label="Settings"
                    class="absolute bottom-full right-0 mb-2 w-72 max-w-[calc(100vw-2rem)] space-y-3 border-2 border-ink bg-paper p-3 shadow-hard rounded-sm"
                >
                    <label class="flex items-center gap-2 text-sm font-semibold">
                        <input
                            type="checkbox"
                            class="size-4 accent-teal"
                            prop:checked=move || engine.chat.auto_next.get()
                            on:change=move |ev| engine.set_auto_next(event_target_checked(&ev))
                        />
                        "Auto-next: find the next stranger when one leaves"
                    </label>
                    <Show when=move || video.get()>
                        <DevicePickers />
                    </Show>
                </div>
            </Show>
        </div>
    }
}

/// Camera and microphone choice, showing the devices in use (labels appear once
/// permission is granted).
#[component]
fn DevicePickers() -> impl IntoView {
    let engine = Engine::expect();
    let devices = RwSignal::new(Vec::<Device>::new());
    let refresh = move || leptos::task::spawn_local(async move { devices.set(platform::devices().await) });
    // Labels appear with permission (a media change); devices come and go.
    Effect::new(move |_| {
        engine.media.rev.track();
        refresh();
    });
    let watch = StoredValue::new_local(Some(platform::watch_devices(refresh)));
    on_cleanup(move || {
        // Stops listening (the browser's watch removes its listener when dropped).
        let _ = watch.try_update_value(Option::take);
    });
    view! {
        <DevicePicker devices kind=DeviceKind::Camera label="Camera" />
        <DevicePicker devices kind=DeviceKind::Microphone label="Microphone" />
    }
}

/// The devices of one kind to choose from, shown only when there is a choice.
#[component]
fn DevicePicker(devices: RwSignal<Vec<Device>>, kind: DeviceKind, label: &'static str) -> impl IntoView {
    let engine = Engine::expect();
    let id = if kind == DeviceKind::Camera { "pick-camera" } else { "pick-microphone" };
    let active = move || {
        engine.media.rev.track();
        platform::active_device(engine, kind)
    };
    let options = move || {
        let mine = devices.get().into_iter().filter(|d| d.kind == kind);
        mine.enumerate()
            .map(|(i, d)| {
                let name = if d.label.is_empty() { format!("{label} {}", i + 1) } else { d.label };
                let this = d.id.clone();
                view! { <option value=d.id prop:selected=move || active().as_deref() == Some(this.as_str())>{name}</option> }
            })
            .collect_view()
    };
    view! {
        <Show when=move || devices.with(|d| d.iter().filter(|d| d.kind == kind).count() > 1)>
            <label class="block text-sm font-semibold" for=id>{label}</label>
            <select
                id=id
                class="w-full border-2 border-ink bg-paper px-2 py-2 text-sm rounded-sm focus-ring"
                on:change=move |ev| engine.choose_device(kind, event_target_value(&ev))
            >
                {options}
            </select>
        </Show>
    }
}

/// Report, with its list of reasons; the list opens with its first item focused.
#[component]
fn ReportMenu(flow: NextFlow, button: NodeRef<leptos::html::Button>) -> impl IntoView {
    let engine = flow.engine;
    let open = flow.report_open;
    let menu = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if let Some(menu) = menu.get() {
            platform::focus_first_button(&menu);
        }
    });
    let report = move |reason: ReportReason| {
        engine.report(reason);
        open.set(false);
        // The chosen item goes away with the list: keep focus where the user was.
        if let Some(button) = button.get_untracked() {
            let _ = button.focus();
        }
    };
    let can_report = move || flow.chatting() || matches!(engine.chat.phase.get(), Phase::PeerLeft(_) | Phase::Blocked);
    view! {
        <div>
            <button
                type="button"
                class="btn bg-paper text-ink inline-flex items-center gap-2 px-2 sm:px-3"
                node_ref=button
                aria-label="Report"
                title="Report"
                aria-expanded=move || open.get().to_string()
                aria-controls="report-menu"
                prop:disabled=move || !can_report()
                on:click=move |_| open.update(|s| *s = !*s)
            >
                <Icon>
                    <path d="M5 21V4h11l-2 4 2 4H5" />
                </Icon>
                <span class="hidden sm:inline">"Report"</span>
            </button>
            <Show when=move || open.get()>
                <div
                    id="report-menu"
                    role="group"
                    aria-labelledby="report-title"
                    node_ref=menu
                    class="absolute bottom-full right-0 mb-2 w-56 border-2 border-ink bg-paper p-2 shadow-hard rounded-sm"
                >
                    <p id="report-title" class="px-2 pb-1 text-sm font-semibold">"What's wrong?"</p>
                    {[
                        (ReportReason::Nudity, "Nudity"),
                        (ReportReason::Harassment, "Harassment"),
                        (ReportReason::Spam, "Spam or ads"),
                        (ReportReason::Underage, "Looks under 18"),
                        (ReportReason::Other, "Something else"),
                    ].into_iter().map(|(reason, label)| view! {
                        <button type="button" class="block w-full px-2 py-1.5 text-left hover:bg-yellow focus-ring rounded-sm" on:click=move |_| report(reason)>
                            {label}
                        </button>
                    }).collect_view()}
                </div>
            </Show>
        </div>
    }
}

#[component]
fn BlockButton(flow: NextFlow) -> impl IntoView {
    let engine = flow.engine;
    let can_block = move || {
        (flow.chatting() || matches!(engine.chat.phase.get(), Phase::PeerLeft(_)))
            && engine.chat.phase.get() != Phase::Blocked
    };
    view! {
        <IconButton
            label=Signal::stored("Block")
            class="btn-danger"
            disabled=Signal::derive(move || !can_block())
            on_click=move |()| engine.block()
        >
            <circle cx="12" cy="12" r="8" />
            <path d="M6.5 6.5l11 11" />
        </IconButton>
    }
}

/// A control that is an icon on phones and icon and text from `sm` up; its label is
/// its accessible name and its tooltip.
#[component]
fn IconButton(
    label: Signal<&'static str>,
    // A callback, not a generic closure: one copy of this component in the wasm
    // instead of one per button.
    #[prop(into)] on_click: Callback<()>,
    children: Children,
    #[prop(optional)] class: &'static str,
    #[prop(optional)] testid: Option<&'static str>,
    #[prop(optional)] disabled: Option<Signal<bool>>,
    #[prop(optional)] pressed: Option<Signal<bool>>,
    #[prop(optional)] expanded: Option<Signal<bool>>,
    #[prop(optional)] controls: Option<&'static str>,
) -> impl IntoView {
    let class = if class.is_empty() { "bg-paper text-ink" } else { class };
    view! {
        <button
            type="button"
            class=format!("btn {class} inline-flex items-center gap-2 px-2 sm:px-3")
            data-testid=testid
            aria-label=move || label.get()
            title=move || label.get()
            aria-pressed=move || pressed.map(|p| p.get().to_string())
            aria-controls=controls
            aria-expanded=move || expanded.map(|e| e.get().to_string())
            prop:disabled=move || disabled.is_some_and(|d| d.get())
            on:click=move |_| on_click.run(())
        >
            <Icon>{children()}</Icon>
            <span class="hidden sm:inline">{move || label.get()}</span>
        </button>
    }
}

/// A 20 px line icon in the text colour; `children` are its SVG shapes.
#[component]
fn Icon(children: Children) -> impl IntoView {
    view! {
        <svg viewBox="0 0 24 24" class="size-5 shrink-0" fill="none" stroke="currentColor" stroke-width="2.2"
            stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
            {children()}
        </svg>
    }
}
