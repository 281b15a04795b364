use leptos::prelude::*;
use protocol::Mode;

/// Video or text, as two large radio cards.
#[component]
pub fn ModePicker(mode: RwSignal<Mode>) -> impl IntoView {
    let option = move |value: Mode, title: &'static str, blurb: &'static str, icon: AnyView| {
        let id = match value {
            Mode::Video => "mode-video",
            Mode::Text => "mode-text",
        };
        view! {
            <label
                for=id
                class="card-choice"
                class=("card-choice-on", move || mode.get() == value)
            >
                <input
                    type="radio"
                    name="mode"
                    id=id
                    value=value.as_str()
                    class="sr-only peer"
                    prop:checked=move || mode.get() == value
                    on:change=move |_| mode.set(value)
                />
                {icon}
                <span class="font-display text-xl font-extrabold">{title}</span>
                <span class="text-sm opacity-80">{blurb}</span>
            </label>
        }
    };
    view! {
        <fieldset class="grid grid-cols-2 gap-4">
            <legend class="mb-3 font-display text-lg font-bold">"How do you want to chat?"</legend>
            {option(Mode::Video, "Video", "Camera and mic, face to face.", camera_icon().into_any())}
            {option(Mode::Text, "Text", "Just typing. No camera needed.", bubble_icon().into_any())}
        </fieldset>
    }
}

fn camera_icon() -> impl IntoView {
    view! {
        <svg viewBox="0 0 24 24" class="size-8" fill="none" stroke="currentColor" stroke-width="2.2"
            stroke-linejoin="round" aria-hidden="true">
            <rect x="2" y="6" width="14" height="12" rx="2" />
            <path d="M16 10.5 22 7v10l-6-3.5z" />
        </svg>
    }
}

fn bubble_icon() -> impl IntoView {
    view! {
        <svg viewBox="0 0 24 24" class="size-8" fill="none" stroke="currentColor" stroke-width="2.2"
            stroke-linejoin="round" aria-hidden="true">
            <path d="M4 4h16v12H9l-5 4z" />
            <path d="M8 9h8M8 12h5" stroke-linecap="round" />
        </svg>
    }
}
