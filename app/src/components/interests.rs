use crate::interests::add_all;
use leptos::prelude::*;
use protocol::limits::MAX_INTERESTS;

/// Interests as removable chips: Enter or comma adds, Backspace on an empty input
/// removes the last one; feedback appears inline.
#[component]
pub fn InterestsInput(interests: RwSignal<Vec<String>>) -> impl IntoView {
    let draft = RwSignal::new(String::new());
    let feedback = RwSignal::new(None::<String>);

    let commit = move || {
        let raw = draft.get_untracked();
        if raw.trim().is_empty() {
            return;
        }
        let mut result = Ok(());
        interests.update(|list| result = add_all(list, &raw));
        match result {
            Ok(()) => {
                draft.set(String::new());
                feedback.set(None);
            }
            Err(message) => feedback.set(Some(message)),
        }
    };

    let on_input = move |ev: leptos::ev::Event| {
        let value = event_target_value(&ev);
        if value.contains(',') {
            draft.set(value);
            commit();
        } else {
            draft.set(value);
            feedback.set(None);
        }
    };

    let on_keydown = move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
        "Enter" => {
            ev.prevent_default();
            commit();
        }
        "Backspace" if draft.get_untracked().is_empty() => {
            interests.update(|list| {
                list.pop();
            });
        }
        _ => {}
    };

    view! {
        <div>
            <label for="interests" class="font-display text-lg font-bold">
                "Interests "
                <span class="font-body text-sm font-normal opacity-70">"(optional)"</span>
            </label>
            <div class="mt-2 flex flex-wrap items-center gap-2 border-2 border-ink bg-paper p-2 rounded-sm focus-within:ring-4 focus-within:ring-teal/60">
                <Chips interests feedback />
                <input
                    id="interests"
                    type="text"
                    autocomplete="off"
                    enterkeyhint="done"
                    maxlength="200"
                    placeholder=move || {
                        if interests.with(Vec::is_empty) { "music, movies, chess…" } else { "add another" }
                    }
                    class="min-w-[8rem] flex-1 bg-transparent px-1 py-1 outline-none placeholder:text-ink/50"
                    aria-describedby="interests-help"
                    aria-invalid=move || feedback.with(Option::is_some).to_string()
                    prop:value=move || draft.get()
                    on:input=on_input
                    on:keydown=on_keydown
                    on:blur=move |_| commit()
                />
            </div>
            <InterestsHelp interests feedback />
        </div>
    }
}

/// The interests so far, each with its remove button.
#[component]
fn Chips(interests: RwSignal<Vec<String>>, feedback: RwSignal<Option<String>>) -> impl IntoView {
    let remove = move |name: &str| {
        interests.update(|list| list.retain(|i| i != name));
        feedback.set(None);
    };
    view! {
        <ul class="contents" aria-label="Your interests">
            <For each=move || interests.get() key=|i| i.clone() let:interest>
                <li class="chip">
                    <span>{interest.clone()}</span>
                    <button
                        type="button"
                        class="chip-remove focus-ring"
                        aria-label=format!("Remove {interest}")
                        on:click=move |_| remove(&interest)
                    >
                        "×"
                    </button>
                </li>
            </For>
        </ul>
    }
}

/// What went wrong with the last entry, or how the field works and how many are in.
#[component]
fn InterestsHelp(interests: RwSignal<Vec<String>>, feedback: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <p id="interests-help" class="mt-1 text-sm" aria-live="polite">
            {move || match feedback.get() {
                Some(message) => view! { <span class="font-semibold text-coral-strong">{message}</span> }.into_any(),
                None => view! {
                    <span class="opacity-70">
                        {move || format!(
                            "Enter or comma adds. {} of {MAX_INTERESTS}. We'll look for someone who shares one.",
                            interests.with(Vec::len),
                        )}
                    </span>
                }.into_any(),
            }}
        </p>
    }
}
