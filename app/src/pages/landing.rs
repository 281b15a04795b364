use crate::components::{InterestsInput, Logo, ModePicker, OnlineBadge};
use leptos::prelude::*;
use protocol::Mode;

/// The landing page: what this is, how you want to chat, what you like.
#[component]
pub fn Landing() -> impl IntoView {
    let mode = RwSignal::new(Mode::Video);
    let interests = RwSignal::new(Vec::<String>::new());

    view! {
        <div class="min-h-dvh flex flex-col">
            <header class="mx-auto flex w-full max-w-5xl flex-wrap items-center justify-between gap-3 px-5 py-5">
                <Logo />
                <OnlineBadge />
            </header>
            <main class="mx-auto grid w-full max-w-5xl flex-1 gap-10 px-5 pb-16 pt-6 md:grid-cols-[1.1fr_1fr] md:items-start md:pt-12">
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
                    <aside class="mt-8 border-2 border-ink bg-yellow/40 p-4 text-sm leading-relaxed rounded-sm shadow-hard-sm">
                        <h2 class="font-display text-base font-extrabold">"Stay safe"</h2>
                        <ul class="mt-2 list-disc space-y-1 pl-5">
                            <li>"You must be 18 or older."</li>
                            <li>"Strangers see whatever your camera shows. Don't share your name, address or accounts."</li>
                            <li>"Skip anyone who makes you uncomfortable, and report people who break the rules."</li>
                        </ul>
                    </aside>
                </section>
                <section
                    class="panel space-y-8"
                    aria-labelledby="setup-title"
                >
                    <h2 id="setup-title" class="sr-only">"Chat settings"</h2>
                    <ModePicker mode />
                    <InterestsInput interests />
                </section>
            </main>
            <footer class="border-t-2 border-ink px-5 py-4 text-center text-sm opacity-80">
                "Let'sMeet · peer-to-peer, anonymous, open source"
            </footer>
        </div>
    }
}
