//! "Only strangers from my country": the connection's country when the server knows
//! it, else a list to pick from.

use crate::engine::Engine;
use leptos::prelude::*;

/// The same-country checkbox. `country` is the user's pick, used only when the server
/// does not know the connection's country (then a list offers every country).
#[component]
pub fn CountryChoice(same_country: RwSignal<bool>, country: RwSignal<Option<String>>) -> impl IntoView {
    let detected = Engine::expect().link.country;
    // Names need the browser (Intl): the server renders codes, hydration swaps them.
    let named = RwSignal::new(false);
    Effect::new(move |_| named.set(true));
    let name = move |code: &str| if named.get() { crate::country::name(code) } else { code.to_string() };
    view! {
        <div class="space-y-2">
            <label class="flex items-center gap-2 font-semibold">
                <input
                    type="checkbox"
                    id="same-country"
                    class="size-5 shrink-0 accent-teal"
                    prop:checked=move || same_country.get()
                    on:change=move |ev| same_country.set(event_target_checked(&ev))
                />
                <span data-testid="same-country-label">
                    "Only strangers from my country"
                    {move || detected.get().map(|code| format!(" ({}, from your connection)", name(&code)))}
                </span>
            </label>
            <Show when=move || same_country.get() && detected.get().is_none()>
                <label for="country" class="sr-only">"Your country"</label>
                <select
                    id="country"
                    class="w-full border-2 border-ink bg-paper px-3 py-2 rounded-sm focus-ring"
                    on:change=move |ev| country.set(Some(event_target_value(&ev)))
                >
                    {move || {
                        let selected = country.get();
                        let named = named.get();
                        protocol::prefs::country_codes()
                            .map(|code| {
                                let label = if named { crate::country::label(code) } else { code.to_string() };
                                view! { <option value=code selected=selected.as_deref() == Some(code)>{label}</option> }
                            })
                            .collect_view()
                    }}
                </select>
            </Show>
        </div>
    }
}
