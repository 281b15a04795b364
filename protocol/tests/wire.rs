//! The exact JSON shapes of PROTOCOL.md, round trips, and refusals.

use proptest::prelude::*;
use protocol::codec::decode_client;
use protocol::*;
use uuid::Uuid;

const M: &str = "6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b";
const S: &str = "11111111-2222-4333-8444-555555555555";
const T: &str = "99999999-8888-4777-8666-555555555555";

fn mid() -> MatchId {
    M.parse().unwrap()
}

/// Serializes `msg`, compares with `golden` as JSON values, and parses it back.
fn client_golden(msg: ClientMsg, golden: &str) {
    let json = msg.to_json();
    let got: serde_json::Value = serde_json::from_str(&json).unwrap();
    let want: serde_json::Value = serde_json::from_str(golden).unwrap();
    assert_eq!(got, want, "shape of {msg:?}");
    assert_eq!(decode_client(golden).unwrap(), msg, "decoding {golden}");
}

fn server_golden(msg: ServerMsg, golden: &str) {
    let json = msg.to_json();
    let got: serde_json::Value = serde_json::from_str(&json).unwrap();
    let want: serde_json::Value = serde_json::from_str(golden).unwrap();
    assert_eq!(got, want, "shape of {msg:?}");
    assert_eq!(ServerMsg::from_json(golden).unwrap(), msg, "decoding {golden}");
}

#[test]
fn client_messages_have_the_documented_shapes() {
    client_golden(
        ClientMsg::Join(Preferences {
            mode: Mode::Video,
            interests: vec!["music".into(), "rust".into()],
            country: Some("DE".into()),
            same_country: true,
        }),
        r#"{"type":"join","mode":"video","interests":["music","rust"],"country":"DE","same_country":true}"#,
    );
    client_golden(
        ClientMsg::Join(Preferences::new(Mode::Text)),
        r#"{"type":"join","mode":"text","interests":[],"country":null,"same_country":false}"#,
    );
    client_golden(ClientMsg::Ready { match_id: mid() }, &format!(r#"{{"type":"ready","match_id":"{M}"}}"#));
    client_golden(
        ClientMsg::Signal {
            match_id: mid(),
            payload: SignalPayload::Offer { sdp: "v=0\r\n".into() },
            generation: None,
        },
        &format!(r#"{{"type":"signal","match_id":"{M}","payload":{{"kind":"offer","sdp":"v=0\r\n"}}}}"#),
    );
    client_golden(
        ClientMsg::Signal { match_id: mid(), payload: SignalPayload::Answer { sdp: "a".into() }, generation: Some(2) },
        &format!(r#"{{"type":"signal","match_id":"{M}","payload":{{"kind":"answer","sdp":"a"}},"generation":2}}"#),
    );
    client_golden(
        ClientMsg::Signal {
            match_id: mid(),
            payload: SignalPayload::Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
            generation: None,
        },
        &format!(
            r#"{{"type":"signal","match_id":"{M}","payload":{{"kind":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdp_mid":"0","sdp_m_line_index":0}}}}"#
        ),
    );
    client_golden(
        ClientMsg::Signal {
            match_id: mid(),
            payload: SignalPayload::Candidate { candidate: "c".into(), sdp_mid: None, sdp_m_line_index: None },
            generation: None,
        },
        &format!(
            r#"{{"type":"signal","match_id":"{M}","payload":{{"kind":"candidate","candidate":"c","sdp_mid":null,"sdp_m_line_index":null}}}}"#
        ),
    );
    client_golden(
        ClientMsg::Signal { match_id: mid(), payload: SignalPayload::EndOfCandidates, generation: None },
        &format!(r#"{{"type":"signal","match_id":"{M}","payload":{{"kind":"end_of_candidates"}}}}"#),
    );
    client_golden(
        ClientMsg::Chat { match_id: mid(), text: "hi ✨".into() },
        &format!(r#"{{"type":"chat","match_id":"{M}","text":"hi ✨"}}"#),
    );
    client_golden(
        ClientMsg::Typing { match_id: mid(), typing: true },
        &format!(r#"{{"type":"typing","match_id":"{M}","typing":true}}"#),
    );
    client_golden(ClientMsg::Next, r#"{"type":"next"}"#);
    client_golden(ClientMsg::Hello { resume_token: None }, r#"{"type":"hello","resume_token":null}"#);
    client_golden(
        ClientMsg::Hello { resume_token: Some(T.into()) },
        &format!(r#"{{"type":"hello","resume_token":"{T}"}}"#),
    );
    client_golden(ClientMsg::Stop, r#"{"type":"stop"}"#);
    for (reason, name) in [
        (ReportReason::Nudity, "nudity"),
        (ReportReason::Harassment, "harassment"),
        (ReportReason::Spam, "spam"),
        (ReportReason::Underage, "underage"),
        (ReportReason::Other, "other"),
    ] {
        client_golden(
            ClientMsg::Report { match_id: mid(), reason },
            &format!(r#"{{"type":"report","match_id":"{M}","reason":"{name}"}}"#),
        );
    }
    client_golden(ClientMsg::Block { match_id: mid() }, &format!(r#"{{"type":"block","match_id":"{M}"}}"#));
}

#[test]
fn server_messages_have_the_documented_shapes() {
    server_golden(
        ServerMsg::Welcome {
            protocol: 1,
            session_id: S.parse().unwrap(),
            resume_token: ResumeToken::parse(T).unwrap(),
            resumed: false,
            ice_servers: vec![
                IceServer { urls: vec!["stun:stun.example.org:3478".into()], username: None, credential: None },
                IceServer {
                    urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
                    username: Some("1700000000:abc".into()),
                    credential: Some("c2VjcmV0".into()),
                },
            ],
            online: OnlineCounts { count: 3, chatting: 2 },
            relay: false,
            country: None,
            moderation: None,
        },
        &format!(
            r#"{{"type":"welcome","protocol":1,"session_id":"{S}","resume_token":"{T}","resumed":false,
            "ice_servers":[{{"urls":["stun:stun.example.org:3478"]}},
              {{"urls":["turn:turn.example.org:3478?transport=udp"],"username":"1700000000:abc","credential":"c2VjcmV0"}}],
            "online":{{"count":3,"chatting":2}},"relay":false}}"#
        ),
    );
    // With moderation: how and where to send sampled frames.
    server_golden(
        ServerMsg::Welcome {
            protocol: 1,
            session_id: S.parse().unwrap(),
            resume_token: ResumeToken::parse(T).unwrap(),
            resumed: false,
            ice_servers: vec![],
            online: OnlineCounts { count: 1, chatting: 0 },
            relay: false,
            country: None,
            moderation: Some(protocol::Moderation {
                path: "/moderation/frame".into(),
                size: 224,
                first_ms: 4000,
                every_ms: [10_000, 30_000],
                gate: true,
            }),
        },
        &format!(
            r#"{{"type":"welcome","protocol":1,"session_id":"{S}","resume_token":"{T}","resumed":false,
            "ice_servers":[],"online":{{"count":1,"chatting":0}},"relay":false,
            "moderation":{{"path":"/moderation/frame","size":224,"first_ms":4000,"every_ms":[10000,30000],"gate":true}}}}"#
        ),
    );
    // The answer to a frame, and whose frame it is.
    assert_eq!(
        serde_json::to_string(&protocol::FrameVerdict { flagged: true, skipped: false }).unwrap(),
        r#"{"flagged":true}"#
    );
    assert_eq!(
        serde_json::from_str::<protocol::FrameVerdict>(r#"{"flagged":false,"skipped":true}"#).unwrap(),
        protocol::FrameVerdict { flagged: false, skipped: true }
    );
    assert_eq!(
        serde_json::to_string(&[protocol::FrameOf::Own, protocol::FrameOf::Peer]).unwrap(),
        r#"["self","peer"]"#
    );
    // A welcome from before the `relay` field still decodes.
    let old = format!(
        r#"{{"type":"welcome","protocol":1,"session_id":"{S}","resume_token":"{T}","resumed":true,"ice_servers":[],"online":{{"count":1,"chatting":0}}}}"#
    );
    assert!(matches!(
        ServerMsg::from_json(&old).unwrap(),
        ServerMsg::Welcome { relay: false, resumed: true, country: None, .. }
    ));
    // With a known country, `welcome` names it.
    let known = ServerMsg::from_json(&old.replace(r#""resumed":true"#, r#""resumed":true,"country":"DE""#)).unwrap();
    assert!(matches!(known, ServerMsg::Welcome { country: Some(ref c), .. } if c == "DE"), "{known:?}");
    assert!(known.to_json().contains(r#""country":"DE""#));
    server_golden(ServerMsg::Queued { mode: Mode::Text }, r#"{"type":"queued","mode":"text"}"#);
    server_golden(
        ServerMsg::Matched {
            match_id: mid(),
            role: Role::Offerer,
            common_interests: vec!["music".into()],
            peer_country: Some("FR".into()),
            ice_servers: None,
            generation: None,
        },
        &format!(
            r#"{{"type":"matched","match_id":"{M}","role":"offerer","common_interests":["music"],"peer_country":"FR"}}"#
        ),
    );
    server_golden(
        ServerMsg::Matched {
            match_id: mid(),
            role: Role::Answerer,
            common_interests: vec![],
            peer_country: None,
            ice_servers: Some(vec![IceServer {
                urls: vec!["turn:127.0.0.1:3478".into()],
                username: Some("1700003600:s".into()),
                credential: Some("c".into()),
            }]),
            generation: Some(0),
        },
        &format!(
            r#"{{"type":"matched","match_id":"{M}","role":"answerer","common_interests":[],"peer_country":null,
            "ice_servers":[{{"urls":["turn:127.0.0.1:3478"],"username":"1700003600:s","credential":"c"}}],"generation":0}}"#
        ),
    );
    server_golden(
        ServerMsg::IceServers {
            match_id: mid(),
            ice_servers: vec![IceServer {
                urls: vec!["turn:t".into()],
                username: Some("u".into()),
                credential: Some("c".into()),
            }],
        },
        &format!(
            r#"{{"type":"ice_servers","match_id":"{M}","ice_servers":[{{"urls":["turn:t"],"username":"u","credential":"c"}}]}}"#
        ),
    );
    server_golden(
        ServerMsg::Signal { match_id: mid(), payload: SignalPayload::Answer { sdp: "x".into() }, generation: None },
        &format!(r#"{{"type":"signal","match_id":"{M}","payload":{{"kind":"answer","sdp":"x"}}}}"#),
    );
    server_golden(
        ServerMsg::Chat { match_id: mid(), text: "yo".into() },
        &format!(r#"{{"type":"chat","match_id":"{M}","text":"yo"}}"#),
    );
    server_golden(
        ServerMsg::Typing { match_id: mid(), typing: false },
        &format!(r#"{{"type":"typing","match_id":"{M}","typing":false}}"#),
    );
    for (reason, name) in [
        (LeftReason::Skipped, "skipped"),
        (LeftReason::Stopped, "stopped"),
        (LeftReason::Disconnected, "disconnected"),
        (LeftReason::Banned, "banned"),
    ] {
        server_golden(
            ServerMsg::PeerLeft { match_id: mid(), reason },
            &format!(r#"{{"type":"peer_left","match_id":"{M}","reason":"{name}"}}"#),
        );
    }
    server_golden(
        ServerMsg::PeerReconnecting { match_id: mid() },
        &format!(r#"{{"type":"peer_reconnecting","match_id":"{M}"}}"#),
    );
    server_golden(
        ServerMsg::PeerResumed { match_id: mid(), generation: None },
        &format!(r#"{{"type":"peer_resumed","match_id":"{M}"}}"#),
    );
    server_golden(
        ServerMsg::PeerResumed { match_id: mid(), generation: Some(3) },
        &format!(r#"{{"type":"peer_resumed","match_id":"{M}","generation":3}}"#),
    );
    server_golden(
        ServerMsg::Online(OnlineCounts { count: 10, chatting: 4 }),
        r#"{"type":"online","count":10,"chatting":4}"#,
    );
    for (code, name) in [
        (ErrorCode::BadMessage, "bad_message"),
        (ErrorCode::TooLarge, "too_large"),
        (ErrorCode::RateLimited, "rate_limited"),
        (ErrorCode::InvalidPreferences, "invalid_preferences"),
        (ErrorCode::NotInMatch, "not_in_match"),
        (ErrorCode::StaleMatch, "stale_match"),
        (ErrorCode::NotAllowed, "not_allowed"),
    ] {
        assert_eq!(code.as_str(), name);
        server_golden(
            ServerMsg::error(code, "why", None),
            &format!(r#"{{"type":"error","code":"{name}","message":"why"}}"#),
        );
    }
    server_golden(
        ServerMsg::error(ErrorCode::StaleMatch, "old", Some(mid())),
        &format!(r#"{{"type":"error","code":"stale_match","message":"old","match_id":"{M}"}}"#),
    );
    server_golden(
        ServerMsg::Banned { reason: "reports".into(), until: "2026-11-25T00:00:00Z".into() },
        r#"{"type":"banned","reason":"reports","until":"2026-11-25T00:00:00Z"}"#,
    );
}

#[test]
fn unknown_fields_are_ignored_and_optional_join_fields_default() {
    let m = decode_client(r#"{"type":"next","extra":{"deep":[1,2]}}"#).unwrap();
    assert_eq!(m, ClientMsg::Next);
    let m = decode_client(r#"{"mode":"text","type":"join"}"#).unwrap();
    assert_eq!(m, ClientMsg::Join(Preferences::new(Mode::Text)));
}

#[test]
fn join_comes_back_normalized() {
    let m = decode_client(
        r#"{"type":"join","mode":"video","interests":[" Music","MUSIC","Go "],"country":"fr","same_country":true}"#,
    )
    .unwrap();
    assert_eq!(
        m,
        ClientMsg::Join(Preferences {
            mode: Mode::Video,
            interests: vec!["music".into(), "go".into()],
            country: Some("FR".into()),
            same_country: true
        })
    );
}

fn code_of(text: &str) -> ErrorCode {
    decode_client(text).expect_err(text).code
}

#[test]
fn malformed_frames_are_bad_message() {
    for text in [
        "",
        "not json",
        "[]",
        "null",
        "42",
        r#"{"no_type":1}"#,
        r#"{"type":"dance"}"#,
        r#"{"type":5}"#,
        r#"{"type":"ready"}"#,
        r#"{"type":"ready","match_id":"not-a-uuid"}"#,
        r#"{"type":"ready","match_id":42}"#,
        r#"{"type":"join","mode":"audio"}"#,
        r#"{"type":"join","mode":"video","interests":"music"}"#,
        r#"{"type":"join","mode":"video","interests":[1]}"#,
        r#"{"type":"join","mode":"video","same_country":"yes"}"#,
        r#"{"type":"typing","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b","typing":"yes"}"#,
        r#"{"type":"signal","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b","payload":{"kind":"video"}}"#,
        r#"{"type":"signal","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b","payload":{"kind":"offer"}}"#,
        r#"{"type":"signal","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b","payload":{"kind":"candidate","candidate":"c","sdp_m_line_index":70000}}"#,
        r#"{"type":"signal","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b","payload":{"kind":"candidate","candidate":"c","sdp_m_line_index":-1}}"#,
        r#"{"type":"report","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b","reason":"rude"}"#,
        r#"{"type":"chat","match_id":"6f1c1b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b"}"#,
        r#"{"type":"next""#,
    ] {
        assert_eq!(code_of(text), ErrorCode::BadMessage, "{text}");
    }
}

#[test]
fn invalid_preferences_are_refused_with_their_code() {
    let eleven: Vec<String> = (0..11).map(|i| format!("\"t{i}\"")).collect();
    for text in [
        format!(r#"{{"type":"join","mode":"video","interests":[{}]}}"#, eleven.join(",")),
        r#"{"type":"join","mode":"video","interests":[" "]}"#.to_string(),
        format!(r#"{{"type":"join","mode":"video","interests":["{}"]}}"#, "a".repeat(33)),
        r#"{"type":"join","mode":"video","country":"XX"}"#.to_string(),
        r#"{"type":"join","mode":"video","country":null,"same_country":true}"#.to_string(),
    ] {
        assert_eq!(code_of(&text), ErrorCode::InvalidPreferences, "{text}");
    }
}

#[test]
fn chat_length_is_limited_in_characters() {
    let ok = format!(r#"{{"type":"chat","match_id":"{M}","text":"{}"}}"#, "é".repeat(2000));
    assert!(decode_client(&ok).is_ok());
    let long = format!(r#"{{"type":"chat","match_id":"{M}","text":"{}"}}"#, "a".repeat(2001));
    let err = decode_client(&long).unwrap_err();
    assert_eq!(err.code, ErrorCode::TooLarge);
    assert_eq!(err.match_id, Some(mid()));
}

#[test]
fn resume_tokens_stay_out_of_debug_output() {
    let t = ResumeToken(Uuid::nil());
    assert_eq!(format!("{t:?}"), "ResumeToken(..)");
    assert!(ResumeToken::parse("nope").is_none());
}

fn arb_payload() -> impl Strategy<Value = SignalPayload> {
    prop_oneof![
        any::<String>().prop_map(|sdp| SignalPayload::Offer { sdp }),
        any::<String>().prop_map(|sdp| SignalPayload::Answer { sdp }),
        (any::<String>(), proptest::option::of(any::<String>()), proptest::option::of(any::<u16>())).prop_map(
            |(candidate, sdp_mid, sdp_m_line_index)| SignalPayload::Candidate { candidate, sdp_mid, sdp_m_line_index }
        ),
        Just(SignalPayload::EndOfCandidates),
    ]
}

fn arb_match() -> impl Strategy<Value = MatchId> {
    any::<u128>().prop_map(|n| MatchId(Uuid::from_u128(n)))
}

fn arb_client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (
            prop_oneof![Just(Mode::Video), Just(Mode::Text)],
            proptest::collection::vec("[a-z0-9 ]{1,32}", 0..10),
            proptest::option::of(proptest::sample::select(protocol::prefs::country_codes().collect::<Vec<_>>())),
            any::<bool>()
        )
            .prop_map(|(mode, interests, country, same)| ClientMsg::Join(Preferences {
                mode,
                interests,
                same_country: same && country.is_some(),
                country: country.map(str::to_string),
            })),
        arb_match().prop_map(|match_id| ClientMsg::Ready { match_id }),
        (arb_match(), arb_payload(), proptest::option::of(any::<u32>()))
            .prop_map(|(match_id, payload, generation)| ClientMsg::Signal { match_id, payload, generation }),
        proptest::option::of("[ -~]{0,40}").prop_map(|resume_token| ClientMsg::Hello { resume_token }),
        (arb_match(), ".{0,200}").prop_map(|(match_id, text)| ClientMsg::Chat { match_id, text }),
        (arb_match(), any::<bool>()).prop_map(|(match_id, typing)| ClientMsg::Typing { match_id, typing }),
        Just(ClientMsg::Next),
        Just(ClientMsg::Stop),
        arb_match().prop_map(|match_id| ClientMsg::Block { match_id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode_client(&text);
    }

    #[test]
    fn json_shaped_garbage_never_panics(
        ty in prop_oneof![Just("hello"), Just("join"), Just("signal"), Just("chat"), Just("ready"), Just("typing"), Just("report"), Just("x")],
        field in "[a-z_]{0,12}",
        value in prop_oneof![Just("null".to_string()), Just("[]".to_string()), Just("{}".to_string()), any::<i64>().prop_map(|n| n.to_string()), ".{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap())],
    ) {
        let text = format!(r#"{{"type":"{ty}","{field}":{value},"match_id":"{M}"}}"#);
        let _ = decode_client(&text);
    }

    #[test]
    fn every_valid_message_round_trips(msg in arb_client_msg()) {
        let decoded = decode_client(&msg.to_json());
        // Join preferences are normalized on the way in; everything else is unchanged.
        let expected = match msg {
            ClientMsg::Join(p) => p.normalize().map(ClientMsg::Join).ok(),
            other => Some(other),
        };
        prop_assert_eq!(decoded.ok(), expected);
    }
}
