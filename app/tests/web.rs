//! Components mounted in a real browser (headless Chromium via wasm-bindgen-test).
#![cfg(all(target_arch = "wasm32", feature = "hydrate"))]

use any_spawner::Executor;
use app::components::{InterestsInput, ModePicker, OnlineBadge};
use app::engine::Engine;
use leptos::prelude::*;
use protocol::{Mode, OnlineCounts, ServerMsg};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{HtmlElement, HtmlInputElement, KeyboardEvent, KeyboardEventInit};

wasm_bindgen_test_configure!(run_in_browser);

fn document() -> web_sys::Document {
    web_sys::window().unwrap().document().unwrap()
}

/// Mounts `view` into a fresh container and returns the container.
fn mount<V: IntoView + 'static>(view: impl FnOnce() -> V + 'static) -> HtmlElement {
    // Reactive effects run on the browser's microtask queue.
    let _ = Executor::init_wasm_bindgen();
    let container: HtmlElement = document().create_element("div").unwrap().unchecked_into();
    document().body().unwrap().append_child(&container).unwrap();
    let handle = leptos::mount::mount_to(container.clone(), view);
    handle.forget();
    container
}

fn query(root: &HtmlElement, selector: &str) -> HtmlElement {
    root.query_selector(selector).unwrap().unwrap_or_else(|| panic!("no {selector}")).unchecked_into()
}

fn chips(root: &HtmlElement) -> Vec<String> {
    let list = root.query_selector_all("[aria-label='Your interests'] li span").unwrap();
    (0..list.length()).map(|i| list.item(i).unwrap().text_content().unwrap()).collect()
}

/// Lets pending reactive updates reach the DOM.
async fn settle() {
    Executor::tick().await;
}

async fn type_and_press(input: &HtmlInputElement, text: &str, key: &str) {
    input.set_value(text);
    input.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    let init = KeyboardEventInit::new();
    init.set_key(key);
    init.set_bubbles(true);
    init.set_cancelable(true);
    input.dispatch_event(&KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap()).unwrap();
    settle().await;
}

#[wasm_bindgen_test]
async fn interests_become_chips_and_can_be_removed() {
    let interests = RwSignal::new(Vec::<String>::new());
    let root = mount(move || view! { <InterestsInput interests /> });
    let input: HtmlInputElement = query(&root, "#interests").unchecked_into();

    type_and_press(&input, "  Music ", "Enter").await;
    assert_eq!(chips(&root), vec!["music"]);
    assert_eq!(input.value(), "", "the input clears after adding");

    // A comma adds as well; duplicates are ignored.
    input.set_value("chess,MUSIC,");
    input.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    settle().await;
    assert_eq!(chips(&root), vec!["music", "chess"]);
    assert_eq!(interests.get_untracked(), vec!["music", "chess"]);

    // Too long: refused with inline feedback, nothing added.
    type_and_press(&input, &"x".repeat(40), "Enter").await;
    assert_eq!(chips(&root).len(), 2);
    assert_eq!(input.get_attribute("aria-invalid").as_deref(), Some("true"));
    assert!(query(&root, "#interests-help").text_content().unwrap().contains("under 33"));

    // Remove by its button, then Backspace on the empty input removes the last.
    query(&root, "button[aria-label='Remove music']").click();
    settle().await;
    assert_eq!(chips(&root), vec!["chess"]);
    type_and_press(&input, "", "Backspace").await;
    assert!(chips(&root).is_empty());
}

#[wasm_bindgen_test]
async fn the_eleventh_interest_is_refused() {
    let interests = RwSignal::new((0..10).map(|i| format!("t{i}")).collect::<Vec<_>>());
    let root = mount(move || view! { <InterestsInput interests /> });
    let input: HtmlInputElement = query(&root, "#interests").unchecked_into();
    type_and_press(&input, "one more", "Enter").await;
    assert_eq!(interests.get_untracked().len(), 10);
    assert!(query(&root, "#interests-help").text_content().unwrap().contains("maximum of 10"));
}

#[wasm_bindgen_test]
async fn the_mode_picker_switches_modes() {
    let mode = RwSignal::new(Mode::Video);
    let root = mount(move || view! { <ModePicker mode /> });
    assert!(query(&root, "label[for='mode-video']").class_list().contains("card-choice-on"));
    query(&root, "label[for='mode-text']").click();
    settle().await;
    assert_eq!(mode.get_untracked(), Mode::Text);
    assert!(query(&root, "label[for='mode-text']").class_list().contains("card-choice-on"));
    assert!(!query(&root, "label[for='mode-video']").class_list().contains("card-choice-on"));
}

#[wasm_bindgen_test]
async fn the_online_badge_shows_what_the_server_says() {
    let root = mount(|| {
        ENGINE.with(|c| c.set(Some(Engine::provide())));
        view! { <OnlineBadge /> }
    });
    let engine = ENGINE.with(|c| c.get()).expect("the view above provided the engine");
    let badge = query(&root, "[data-testid='online']");
    assert_eq!(badge.text_content().unwrap().trim(), "Connecting…");
    assert_eq!(badge.get_attribute("data-count"), None);

    engine.apply(ServerMsg::Online(OnlineCounts { count: 1234, chatting: 56 }));
    engine.link.set(app::engine::Link::Connected);
    settle().await;
    assert_eq!(badge.text_content().unwrap().trim(), "1,234 online · 56 chatting");
    assert_eq!(badge.get_attribute("data-count").as_deref(), Some("1234"));

    engine.link.set(app::engine::Link::Reconnecting);
    settle().await;
    assert!(badge.text_content().unwrap().contains("reconnecting"));
}

thread_local! {
    /// The engine the badge test's view provided, handed out of the view closure.
    static ENGINE: std::cell::Cell<Option<Engine>> = const { std::cell::Cell::new(None) };
}
