//! Pieces shared between screens.

mod country;
mod interests;
mod mode;
mod notice;
mod online;

pub use country::CountryChoice;
pub use interests::InterestsInput;
pub use mode::ModePicker;
pub use notice::Notice;
pub use online::OnlineBadge;

use leptos::prelude::*;

/// The product mark.
#[component]
pub fn Logo() -> impl IntoView {
    view! {
        <a href="/" class="font-display text-2xl font-black tracking-tight focus-ring rounded-sm">
            "Let'"
            <span class="bg-yellow text-onaccent px-1 border-2 border-ink shadow-hard-sm">"s"</span>
            "Meet"
        </a>
    }
}
