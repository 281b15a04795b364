//! Components mounted in a real browser (headless Chromium via wasm-bindgen-test).
#![cfg(all(target_arch = "wasm32", feature = "hydrate"))]

use any_spawner::Executor;
use app::components::{InterestsInput, ModePicker, Notice, OnlineBadge};
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

/// Waits `ms` milliseconds of real time, for the page's timers.
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

/// Lets pending reactive updates reach the DOM.
async fn settle() {
    Executor::tick().await;
}

/// Presses Esc on the page (the chat screen listens on the window).
fn press_escape() {
    let init = KeyboardEventInit::new();
    init.set_key("Escape");
    init.set_bubbles(true);
    init.set_cancelable(true);
    let ev = KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    document().body().unwrap().dispatch_event(&ev).unwrap();
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
    engine.link_changed(app::engine::Link::Connected);
    settle().await;
    assert_eq!(badge.text_content().unwrap().trim(), "1,234 online · 56 chatting");
    assert_eq!(badge.get_attribute("data-count").as_deref(), Some("1234"));

    engine.link_changed(app::engine::Link::Reconnecting);
    settle().await;
    assert!(badge.text_content().unwrap().contains("reconnecting"));

    // Closed for good (banned): no green light.
    engine.link_changed(app::engine::Link::Closed);
    settle().await;
    assert_eq!(badge.text_content().unwrap().trim(), "Disconnected");
    assert!(query(&badge, "span").class_list().contains("bg-coral"));
}

#[wasm_bindgen_test]
async fn a_refused_message_shows_as_a_dismissible_alert() {
    let root = mount(|| {
        ENGINE.with(|c| c.set(Some(Engine::provide())));
        view! { <Notice /> }
    });
    let engine = ENGINE.with(|c| c.get()).expect("the view above provided the engine");
    assert!(root.query_selector("[role='alert']").unwrap().is_none(), "no alert without a notice");

    engine.apply(ServerMsg::error(protocol::ErrorCode::NotAllowed, "already in a match", None));
    settle().await;
    let alert = query(&root, "[role='alert']");
    assert!(alert.text_content().unwrap().contains("already in a match"));

    query(&root, "button[aria-label='Dismiss']").click();
    settle().await;
    assert_eq!(engine.notice.get_untracked(), None);
    assert!(root.query_selector("[role='alert']").unwrap().is_none(), "dismissed");
}

thread_local! {
    /// The engine a test's view provided, handed out of the view closure.
    static ENGINE: std::cell::Cell<Option<Engine>> = const { std::cell::Cell::new(None) };
}

mod state_machine {
    use super::*;
    use app::engine::{Author, Phase};
    use protocol::{LeftReason, MatchId, Preferences, ResumeToken, Role, SessionId};
    use uuid::Uuid;

    fn engine() -> Engine {
        let _ = Executor::init_wasm_bindgen();
        let owner = Owner::new();
        owner.set();
        let e = Engine::provide();
        std::mem::forget(owner);
        e
    }

    fn welcome(resumed: bool) -> ServerMsg {
        ServerMsg::Welcome {
            protocol: 1,
            session_id: SessionId(Uuid::from_u128(1)),
            resume_token: ResumeToken(Uuid::from_u128(2)),
            resumed,
            ice_servers: vec![],
            online: OnlineCounts { count: 2, chatting: 0 },
            relay: false,
            country: None,
            moderation: None,
        }
    }

    /// A `welcome` from a server that moderates video, with or without the gate.
    fn moderated_welcome(resumed: bool, gate: bool) -> ServerMsg {
        let ServerMsg::Welcome {
            protocol, session_id, resume_token, resumed, ice_servers, online, relay, country, ..
        } = welcome(resumed)
        else {
            unreachable!()
        };
        let moderation = Some(protocol::Moderation {
            path: "/moderation/frame".into(),
            size: 224,
            first_ms: 800,
            every_ms: [1_500, 2_500],
            gate,
        });
        ServerMsg::Welcome {
            protocol,
            session_id,
            resume_token,
            resumed,
            ice_servers,
            online,
            relay,
            country,
            moderation,
        }
    }

    fn matched(id: u128, common: &[&str]) -> ServerMsg {
        ServerMsg::Matched {
            match_id: MatchId(Uuid::from_u128(id)),
            role: Role::Answerer,
            common_interests: common.iter().map(|s| s.to_string()).collect(),
            peer_country: None,
            ice_servers: None,
            generation: Some(0),
        }
    }

    /// Mounts the chat screen on the current engine; dropping the handle leaves the screen.
    fn mount_chat() -> (HtmlElement, Box<dyn std::any::Any>) {
        let container: HtmlElement = document().create_element("div").unwrap().unchecked_into();
        document().body().unwrap().append_child(&container).unwrap();
        let handle = leptos::mount::mount_to(container.clone(), || view! { <app::pages::Chat /> });
        (container, Box::new(handle))
    }

    fn texts(e: &Engine, author: Author) -> Vec<String> {
        e.chat.log.get_untracked().into_iter().filter(|l| l.author == author).map(|l| l.text).collect()
    }

    #[wasm_bindgen_test]
    fn a_text_chat_runs_from_waiting_to_peer_left_and_keeps_its_history() {
        let e = engine();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        assert_eq!(e.chat.phase.get_untracked(), Phase::Waiting);
        e.apply(ServerMsg::Queued { mode: Mode::Text });
        e.apply(matched(7, &["chess", "go"]));
        assert_eq!(e.chat.phase.get_untracked(), Phase::Connected);
        assert_eq!(texts(&e, Author::System), vec!["You're now chatting with a stranger. You both like chess and go."]);
        let id = MatchId(Uuid::from_u128(7));
        e.apply(ServerMsg::Typing { match_id: id, typing: true });
        assert!(e.chat.peer_typing.get_untracked());
        e.apply(ServerMsg::Chat { match_id: id, text: "hi".into() });
        assert!(!e.chat.peer_typing.get_untracked(), "a message ends the typing indicator");
        e.say("  hello  ");
        e.say("   ");
        assert_eq!(texts(&e, Author::Stranger), vec!["hi"]);
        assert_eq!(texts(&e, Author::Me), vec!["hello"]);
        // Messages of another match are ignored.
        e.apply(ServerMsg::Chat { match_id: MatchId(Uuid::from_u128(8)), text: "intruder".into() });
        assert_eq!(texts(&e, Author::Stranger), vec!["hi"]);
        e.apply(ServerMsg::PeerReconnecting { match_id: id });
        assert_eq!(e.chat.phase.get_untracked(), Phase::PeerReconnecting);
        e.apply(ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
        assert_eq!(e.chat.phase.get_untracked(), Phase::Connected);
        assert_eq!(e.chat.current.get_untracked().map(|m| m.generation), Some(1), "signals now carry generation 1");
        e.apply(ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
        assert_eq!(e.chat.phase.get_untracked(), Phase::PeerLeft(LeftReason::Skipped));
        assert_eq!(texts(&e, Author::Stranger), vec!["hi"], "history stays after the stranger leaves");
        assert!(e.chat.current.get_untracked().is_none());
        // The next match starts a fresh conversation.
        e.next();
        assert_eq!(e.chat.phase.get_untracked(), Phase::Waiting);
        e.apply(matched(9, &[]));
        assert!(texts(&e, Author::Stranger).is_empty());
        assert_eq!(texts(&e, Author::System), vec!["You're now chatting with a stranger. Say hi!"]);
    }

    #[wasm_bindgen_test]
    fn the_connections_country_comes_from_welcome_and_both_from_needs_both_to_insist() {
        let e = engine();
        let ServerMsg::Welcome { protocol, session_id, resume_token, resumed, ice_servers, online, relay, .. } =
            welcome(false)
        else {
            unreachable!()
        };
        let country = Some("DE".to_string());
        e.apply(ServerMsg::Welcome {
            protocol,
            session_id,
            resume_token,
            resumed,
            ice_servers,
            online,
            relay,
            country,
            moderation: None,
        });
        assert_eq!(e.link.country.get_untracked().as_deref(), Some("DE"));
        let with_country = |id, country: &str| match matched(id, &[]) {
            ServerMsg::Matched { peer_country: _, match_id, role, common_interests, ice_servers, generation } => {
                let peer_country = Some(country.to_string());
                ServerMsg::Matched { match_id, role, common_interests, peer_country, ice_servers, generation }
            }
            _ => unreachable!(),
        };
        // The stranger declared a country, but we did not insist on ours: no "both from".
        e.start(Preferences { country: Some("DE".into()), ..Preferences::new(Mode::Text) });
        e.apply(with_country(4, "FR"));
        assert_eq!(texts(&e, Author::System), vec!["You're now chatting with a stranger. Say hi!"]);
        e.stop();
        e.start(Preferences { country: Some("DE".into()), same_country: true, ..Preferences::new(Mode::Text) });
        e.apply(ServerMsg::Queued { mode: Mode::Text });
        e.apply(with_country(5, "DE"));
        assert_eq!(texts(&e, Author::System), vec!["You're now chatting with a stranger. You're both from Germany."]);
    }

    #[wasm_bindgen_test]
    fn losing_the_session_ends_the_chat_and_banned_is_final() {
        let e = engine();
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(3, &[]));
        // Reconnected, but the server no longer knew us: the chat is over.
        e.apply(welcome(false));
        assert_eq!(e.chat.phase.get_untracked(), Phase::PeerLeft(LeftReason::Disconnected));
        assert!(texts(&e, Author::System).iter().any(|t| t.contains("Connection lost")));
        e.apply(ServerMsg::Banned { reason: "reports".into(), until: "2030-01-01T00:00:00Z".into() });
        assert!(matches!(e.chat.phase.get_untracked(), Phase::Banned { .. }));
        assert!(!e.in_chat());
    }

    #[wasm_bindgen_test]
    fn stale_match_errors_are_quiet_and_others_are_shown() {
        let e = engine();
        e.apply(ServerMsg::error(protocol::ErrorCode::StaleMatch, "old", None));
        assert_eq!(e.notice.get_untracked(), None);
        e.apply(ServerMsg::error(protocol::ErrorCode::InvalidPreferences, "country \"XX\" is not an ISO code", None));
        assert!(e.notice.get_untracked().unwrap().contains("XX"));
        e.stop();
        assert_eq!(e.chat.phase.get_untracked(), Phase::Idle);
    }

    #[wasm_bindgen_test]
    async fn leaving_the_chat_screen_ends_the_chat() {
        let e = engine();
        let (_root, screen) = mount_chat();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(11, &[]));
        settle().await;
        assert_eq!(e.chat.phase.get_untracked(), Phase::Connected);
        drop(screen);
        settle().await;
        assert_eq!(e.chat.phase.get_untracked(), Phase::Idle);
        assert!(e.chat.current.get_untracked().is_none());
    }

    #[wasm_bindgen_test]
    fn a_match_that_races_a_stop_is_ignored_and_a_welcome_lifts_a_ban() {
        let e = engine();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.stop();
        // Paired just before our stop reached the server: that match is already over.
        e.apply(matched(21, &[]));
        assert_eq!(e.chat.phase.get_untracked(), Phase::Idle);
        assert!(e.chat.current.get_untracked().is_none());
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(22, &[]));
        assert_eq!(e.chat.phase.get_untracked(), Phase::Connected);
        e.apply(ServerMsg::Banned { reason: "reports".into(), until: "2030-01-01T00:00:00Z".into() });
        e.apply(matched(23, &[]));
        assert!(matches!(e.chat.phase.get_untracked(), Phase::Banned { .. }), "no match while banned");
        // Welcomed again later: the ban is over.
        e.apply(welcome(false));
        assert_eq!(e.chat.phase.get_untracked(), Phase::Idle);
        assert!(e.can_act());
    }

    #[wasm_bindgen_test]
    fn a_wait_resumed_after_a_reload_is_waiting() {
        let e = engine();
        e.apply(welcome(true));
        e.apply(ServerMsg::Queued { mode: Mode::Text });
        assert_eq!(e.chat.phase.get_untracked(), Phase::Waiting);
        // A `queued` answering a join we have stopped since changes nothing.
        e.stop();
        e.apply(ServerMsg::Queued { mode: Mode::Text });
        assert_eq!(e.chat.phase.get_untracked(), Phase::Idle);
    }

    #[wasm_bindgen_test]
    async fn nothing_acts_while_banned() {
        let e = engine();
        let (root, _screen) = mount_chat();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(12, &[]));
        e.apply(ServerMsg::Banned { reason: "too many reports".into(), until: "2030-06-15T12:00:00Z".into() });
        e.link_changed(app::engine::Link::Closed);
        settle().await;
        let banned = e.chat.phase.get_untracked();
        assert!(matches!(banned, Phase::Banned { .. }));

        press_escape();
        press_escape();
        settle().await;
        e.next();
        e.start(Preferences::new(Mode::Text));
        e.stop();
        assert_eq!(e.chat.phase.get_untracked(), banned, "Esc, Next, Start and Stop do nothing");
        let next: web_sys::HtmlButtonElement = query(&root, "[data-testid='next']").unchecked_into();
        assert!(next.disabled());

        let status = query(&root, "[data-testid='status']").text_content().unwrap();
        assert!(status.contains("too many reports"), "{status}");
        assert!(status.contains("2030") && !status.contains("12:00:00Z"), "a readable time: {status}");
    }

    #[wasm_bindgen_test]
    fn the_badge_learns_the_strangers_candidate_types_from_their_signals_of_this_match_only() {
        use protocol::SignalPayload;
        let e = engine();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(21, &[]));
        let signal = |id: u128, candidate: &str| ServerMsg::Signal {
            match_id: MatchId(Uuid::from_u128(id)),
            payload: SignalPayload::Candidate { candidate: candidate.into(), sdp_mid: None, sdp_m_line_index: None },
            generation: None,
        };
        e.apply(signal(21, "candidate:1 1 udp 2122 192.0.2.1 5000 typ host"));
        e.apply(signal(21, "candidate:2 1 udp 1686 198.51.100.1 5001 typ srflx raddr 0.0.0.0 rport 0"));
        e.apply(signal(21, "candidate:3 1 udp 2122 192.0.2.1 5002 typ host"));
        e.apply(signal(99, "candidate:4 1 udp 41 203.0.113.1 5003 typ relay"));
        assert_eq!(e.media.remote_candidate_types.get_untracked(), vec!["host", "srflx"]);
    }

    #[wasm_bindgen_test]
    fn mic_and_camera_toggle_and_auto_next_is_set_by_name() {
        let e = engine();
        assert!(!e.media.mic_muted.get_untracked() && !e.media.camera_off.get_untracked());
        e.toggle_mic();
        assert!(e.media.mic_muted.get_untracked() && !e.media.camera_off.get_untracked());
        e.toggle_camera();
        e.toggle_mic();
        assert!(!e.media.mic_muted.get_untracked() && e.media.camera_off.get_untracked());
        e.set_auto_next(true);
        assert!(e.chat.auto_next.get_untracked());
    }

    #[wasm_bindgen_test]
    async fn really_skip_belongs_to_its_match() {
        let e = engine();
        let (root, _screen) = mount_chat();
        let next = query(&root, "[data-testid='next']");
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(13, &[]));
        settle().await;
        next.click();
        settle().await;
        assert_eq!(next.text_content().unwrap(), "Really skip? (Esc)");

        // The stranger leaves first: the question goes, the auto-next countdown shows.
        e.set_auto_next(true);
        e.apply(ServerMsg::PeerLeft { match_id: MatchId(Uuid::from_u128(13)), reason: LeftReason::Skipped });
        settle().await;
        assert_eq!(next.text_content().unwrap(), "Next in 3…");

        // The next stranger is not skipped by a stale answer.
        e.set_auto_next(false);
        e.next();
        e.apply(matched(14, &[]));
        settle().await;
        assert_eq!(next.text_content().unwrap(), "Next");
        press_escape();
        settle().await;
        assert_eq!(next.text_content().unwrap(), "Really skip? (Esc)", "Esc asks the same question");
        assert_eq!(e.chat.phase.get_untracked(), Phase::Connected);
    }

    #[wasm_bindgen_test]
    async fn blocking_ends_the_chat_and_auto_next_stays_put() {
        let e = engine();
        let (root, _screen) = mount_chat();
        let next = query(&root, "[data-testid='next']");
        let status = query(&root, "[data-testid='status']");
        e.set_auto_next(true);
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(15, &[]));
        e.block();
        settle().await;
        assert_eq!(e.chat.phase.get_untracked(), Phase::Blocked);
        assert_eq!(status.text_content().unwrap(), "You blocked this stranger. You won't be matched again.");
        assert_eq!(next.text_content().unwrap(), "New chat");

        // Blocking a stranger who already left stops the auto-next countdown.
        e.next();
        e.apply(matched(16, &[]));
        e.apply(ServerMsg::PeerLeft { match_id: MatchId(Uuid::from_u128(16)), reason: LeftReason::Skipped });
        settle().await;
        assert_eq!(next.text_content().unwrap(), "Next in 3…");
        e.block();
        settle().await;
        sleep(1200).await;
        assert_eq!(e.chat.phase.get_untracked(), Phase::Blocked);
        assert_eq!(next.text_content().unwrap(), "New chat");
    }

    #[wasm_bindgen_test]
    async fn the_report_menu_takes_focus_and_esc_only_closes_it() {
        let e = engine();
        let (root, _screen) = mount_chat();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(17, &[]));
        settle().await;
        assert!(root.query_selector("[role='log'][aria-live='polite']").unwrap().is_some());

        let button = query(&root, "button[aria-controls='report-menu']");
        button.click();
        settle().await;
        let first = query(&root, "#report-menu button");
        assert_eq!(document().active_element(), Some(first.unchecked_into()), "the first item has focus");

        press_escape();
        settle().await;
        assert!(root.query_selector("#report-menu").unwrap().is_none(), "Esc closes the menu");
        assert_eq!(document().active_element(), Some(button.clone().unchecked_into()), "focus returns to Report");
        assert_eq!(query(&root, "[data-testid='next']").text_content().unwrap(), "Next", "and does not skip");
        assert_eq!(e.chat.phase.get_untracked(), Phase::Connected);
    }

    /// The chat page in a text match `n`, and its message input (open).
    async fn in_text_match(n: u128) -> (Engine, HtmlElement, Box<dyn std::any::Any>, HtmlInputElement) {
        let e = engine();
        let (root, screen) = mount_chat();
        let input: HtmlInputElement = query(&root, "#message").unchecked_into();
        e.apply(welcome(false));
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(n, &[]));
        settle().await;
        assert!(!input.disabled());
        (e, root, screen, input)
    }

    #[wasm_bindgen_test]
    async fn the_chat_input_closes_while_the_link_is_down() {
        let (e, root, _screen, input) = in_text_match(18).await;

        e.link_changed(app::engine::Link::Reconnecting);
        settle().await;
        assert!(input.disabled());
        assert_eq!(input.placeholder(), "Reconnecting to the server…");
        let send: web_sys::HtmlButtonElement = query(&root, "button[type='submit']").unchecked_into();
        assert!(send.disabled());
        assert!(!e.say("into the void"));
        assert!(texts(&e, Author::Me).is_empty(), "no line that never went out");

        e.apply(welcome(true));
        settle().await;
        assert!(!input.disabled());
        assert!(e.say("back"));
        assert_eq!(texts(&e, Author::Me), vec!["back"]);
    }

    #[wasm_bindgen_test]
    async fn a_banned_users_chat_input_says_why_it_is_closed() {
        let (e, _root, _screen, input) = in_text_match(19).await;
        e.apply(ServerMsg::Banned { reason: "reports".into(), until: "2030-01-01T00:00:00Z".into() });
        settle().await;
        assert!(input.disabled());
        assert_eq!(input.placeholder(), "You can't chat right now");
    }

    #[wasm_bindgen_test]
    fn a_flagged_stranger_stays_hidden_until_shown_anyway_and_the_next_match_starts_clear() {
        use app::engine::{Outcome, Veil};
        use protocol::FrameOf;
        let e = engine();
        e.apply(moderated_welcome(false, false));
        assert!(e.moderation.plan.get_untracked().is_some(), "the plan comes with welcome");
        e.start(Preferences::new(Mode::Text));
        e.apply(matched(31, &[]));
        let this = Some(MatchId(Uuid::from_u128(31)));
        // Clean and unjudged frames, our own frames and verdicts about another match
        // change nothing.
        e.frame_judged(FrameOf::Peer, this, Outcome::Clean);
        e.frame_judged(FrameOf::Peer, this, Outcome::Unjudged);
        e.frame_judged(FrameOf::Peer, Some(MatchId(Uuid::from_u128(30))), Outcome::Flagged);
        e.frame_judged(FrameOf::Own, this, Outcome::Flagged);
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Clear);

        e.frame_judged(FrameOf::Peer, this, Outcome::Flagged);
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Hidden { reported: false });
        // Report on the veil is the usual report.
        e.report_hidden();
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Hidden { reported: true });
        assert!(texts(&e, Author::System).iter().any(|t| t == "Thanks. Your report was sent."));
        e.show_anyway();
        e.frame_judged(FrameOf::Peer, this, Outcome::Flagged);
        assert_eq!(e.moderation.veil.get_untracked(), Veil::ShownAnyway, "shown for the rest of the match");

        // The stranger is banned: said plainly, and the veil goes with the match.
        e.apply(ServerMsg::PeerLeft { match_id: MatchId(Uuid::from_u128(31)), reason: LeftReason::Banned });
        assert_eq!(e.chat.phase.get_untracked(), Phase::PeerLeft(LeftReason::Banned));
        assert_eq!(
            texts(&e, Author::System).last().map(String::as_str),
            Some("Stranger was removed for breaking the rules.")
        );
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Clear);
        e.next();
        e.apply(matched(32, &[]));
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Clear);
        e.frame_judged(FrameOf::Peer, this, Outcome::Flagged);
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Clear, "a verdict about the last match is too late");
        e.frame_judged(FrameOf::Peer, Some(MatchId(Uuid::from_u128(32))), Outcome::Flagged);
        assert!(e.moderation.veil.get_untracked().hides());
        e.stop();
        assert_eq!(e.moderation.veil.get_untracked(), Veil::Clear);
    }

    #[wasm_bindgen_test]
    fn the_gate_wants_one_clean_frame_of_ours_per_session() {
        use app::engine::Outcome;
        use protocol::FrameOf;
        let e = engine();
        e.apply(moderated_welcome(false, false));
        // Video asks for the camera first (in the background); the server queues us.
        e.start(Preferences::new(Mode::Video));
        e.apply(ServerMsg::Queued { mode: Mode::Video });
        assert_eq!(e.chat.phase.get_untracked(), Phase::Waiting);
        assert!(!e.gate_frame_wanted(), "no gate in the plan");

        // A new session on a server with the gate: queued again, and a frame is wanted.
        e.apply(moderated_welcome(false, true));
        assert_eq!(e.chat.phase.get_untracked(), Phase::Waiting);
        assert!(e.gate_frame_wanted());
        e.frame_judged(FrameOf::Own, None, Outcome::Unjudged);
        e.frame_judged(FrameOf::Own, None, Outcome::Flagged);
        assert!(e.gate_frame_wanted(), "sent again until one is clean");
        e.frame_judged(FrameOf::Own, None, Outcome::Clean);
        assert!(!e.gate_frame_wanted(), "passed");
        e.apply(moderated_welcome(true, true));
        assert!(!e.gate_frame_wanted(), "a resume keeps it");
        e.apply(moderated_welcome(false, true));
        assert!(e.gate_frame_wanted(), "a new session starts over");
        e.stop();
        assert!(!e.gate_frame_wanted(), "only while queued");
    }
}
