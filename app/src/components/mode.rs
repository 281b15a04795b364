use leptos::prelude::*;
use protocol::Mode;

/// Video or text, as two large radio cards.
#[component]
pub fn ModePicker(mode: RwSignal<Mode>) -> impl IntoView {
    let option = move |value: Mode, title: &'static str, blurb: &'static str, icon: &'static str| {
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
                <span class="text-3xl" aria-hidden="true">{icon}</span>
                <span class="font-display text-xl font-extrabold">{title}</span>
                <span class="text-sm opacity-80">{blurb}</span>
            </label>
        }
    };
    view! {
        <fieldset class="grid grid-cols-2 gap-4">
            <legend class="mb-3 font-display text-lg font-bold">"How do you want to chat?"</legend>
            {option(Mode::Video, "Video", "Camera and mic, face to face.", "🎥")}
            {option(Mode::Text, "Text", "Just typing. No camera needed.", "💬")}
        </fieldset>
    }
}
