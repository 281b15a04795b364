use crate::components::{CountryChoice, InterestsInput, Logo, ModePicker, Notice, OnlineBadge};
use crate::engine::{Engine, Phase};
use crate::platform;
use leptos::prelude::*;
use leptos_router::NavigateOptions;
use leptos_router::hooks::use_navigate;
use protocol::{Mode, Preferences};

/// The landing page: what this is, how you want to chat, what you like, Start.
#[component]
pub fn Landing() -> impl IntoView {
    let engine = Engine::expect();
    let initial = engine.chat.prefs.get_untracked();
    let mode = RwSignal::new(initial.as_ref().map_or(Mode::Video, |p| p.mode));
    let interests = RwSignal::new(initial.as_ref().map(|p| p.interests.clone()).unwrap_or_default());
    let same_country = RwSignal::new(initial.as_ref().is_some_and(|p| p.same_country));
    let country = RwSignal::new(initial.as_ref().and_then(|p| p.country.clone()));
    let terms = RwSignal::new(false);

    // After hydration: what this browser remembers, and its language's country.
    Effect::new(move |_| {
        terms.set(platform::load_terms());
        if country.get_untracked().is_none() {
            country.set(platform::browser_country());
        }
    });

    let navigate = use_navigate();
    // After a reload here the engine may resume a chat or a wait: that is the chat screen.
    let resume = navigate.clone();
    Effect::new(move |_| {
        if engine.in_chat() {
            resume("/chat", NavigateOptions { replace: true, ..Default::default() });
        }
    });
    let start = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if !terms.get_untracked() || !untrack(|| engine.can_act()) {
            return;
        }
        platform::store_terms(true);
        // The connection's country, when the server knows it, is the one that counts.
        let country = engine.link.country.get_untracked().or_else(|| country.get_untracked());
        let prefs = Preferences {
            mode: mode.get_untracked(),
            interests: interests.get_untracked(),
            same_country: same_country.get_untracked() && country.is_some(),
            country,
        };
        engine.start(prefs);
        navigate("/chat", Default::default());
    };

    view! {
        <div class="min-h-dvh flex flex-col">
            <header class="mx-auto flex w-full max-w-5xl flex-wrap items-center justify-between gap-3 px-5 py-5">
                <Logo />
                <OnlineBadge />
            </header>
            <Notice class="mx-auto w-full max-w-5xl px-5" />
            <main class="mx-auto grid w-full max-w-5xl flex-1 gap-10 px-5 pb-16 pt-6 md:grid-cols-[1.1fr_1fr] md:grid-rows-[auto_1fr] md:items-start md:pt-12">
                <Pitch />
                <form class="panel space-y-7 md:col-start-2 md:row-span-2 md:row-start-1" aria-labelledby="setup-title" on:submit=start>
                    <h2 id="setup-title" class="sr-only">"Chat settings"</h2>
                    <ModePicker mode />
                    <InterestsInput interests />
                    <CountryChoice same_country country />
                    <Show when=move || engine.has_relay() && mode.get() == Mode::Video>
                        <HideMyIp />
                    </Show>
                    <StartButton mode terms />
                </form>
                <SafetyNote />
            </main>
            <footer class="border-t-2 border-ink px-5 py-4 text-center text-sm opacity-80">
                "Let'sMeet · peer-to-peer, anonymous, open source"
            </footer>
        </div>
    }
}

/// What this is, in two lines.
#[component]
fn Pitch() -> impl IntoView {
    view! {
        <section>
            <h1 class="font-display text-5xl font-black leading-[1.05] tracking-tight sm:text-6xl">
                "Talk to "
                <span class="highlight">"strangers"</span>
                ","
                <br />
                "face to face."
            </h1>
            <p class="mt-6 max-w-prose text-lg leading-relaxed">
                "Random video or text chat with someone new, in seconds. No account, no name. "
                "Your video goes straight to the other person, never through our servers."
            </p>
        </section>
    }
}

/// "Hide my IP": video through the relay only.
#[component]
fn HideMyIp() -> impl IntoView {
    let engine = Engine::expect();
    view! {
        <label class="flex items-start gap-2 text-sm">
            <input
                type="checkbox"
                id="relay-only"
                class="mt-0.5 size-5 shrink-0 accent-teal"
                prop:checked=move || engine.media.relay_only.get()
                on:change=move |ev| engine.set_relay_only(event_target_checked(&ev))
            />
            <span>
                <b>"Hide my IP"</b>
                " — video goes through our relay, so the stranger never learns your address. It may add a little delay."
            </span>
        </label>
    }
}

/// The rules to accept, Start, and why Start does nothing while banned.
#[component]
fn StartButton(mode: RwSignal<Mode>, terms: RwSignal<bool>) -> impl IntoView {
    let engine = Engine::expect();
    view! {
        <label class="flex items-start gap-2 text-sm">
            <input
                type="checkbox"
                id="terms"
                class="mt-0.5 size-5 shrink-0 accent-teal"
                required=true
                prop:checked=move || terms.get()
                on:change=move |ev| terms.set(event_target_checked(&ev))
            />
            <span>"I'm 18 or older and I'll follow the rules: no nudity, no harassment, no spam."</span>
        </label>
        <button
            type="submit"
            class="btn btn-primary w-full text-lg"
            data-testid="start"
            prop:disabled=move || !terms.get() || !engine.can_act()
        >
            {move || match mode.get() {
                Mode::Video => "Start video chat",
                Mode::Text => "Start text chat",
            }}
        </button>
        {move || match engine.chat.phase.get() {
            Phase::Banned { reason, until } => Some(view! {
                <p class="text-sm font-semibold text-coral-strong" data-testid="banned">
                    {super::ban_text(&reason, &until)}
                </p>
            }),
            _ => None,
        }}
    }
}

/// The safety note beside the form.
#[component]
fn SafetyNote() -> impl IntoView {
    view! {
        <aside class="border-2 border-ink bg-yellow/40 p-4 text-sm leading-relaxed rounded-sm shadow-hard-sm md:col-start-1 md:row-start-2">
            <h2 class="font-display text-base font-extrabold">"Stay safe"</h2>
            <ul class="mt-2 list-disc space-y-1 pl-5">
                <li>"You must be 18 or older."</li>
                <li>"Strangers see whatever your camera shows. Don't share your name, address or accounts."</li>
                <li>"Skip anyone who makes you uncomfortable, and report people who break the rules."</li>
            </ul>
        </aside>
    }
}
