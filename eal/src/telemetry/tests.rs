use super::*;
use serde_json::json;

fn value(reply: &str, cmd: &str) -> Value {
    let v: Value = serde_json::from_str(reply).expect("a reply is JSON");
    v.get(cmd).cloned().expect("keyed by its command")
}

#[test]
fn a_reply_is_keyed_by_the_command_alone() {
    register("/test/echo", "Echoes its parameter", |p| p.map(Value::from)).unwrap();
    assert_eq!(reply("/test/echo,a,b"), r#"{"/test/echo":"a,b"}"#);
    assert_eq!(reply(",,/test/echo,x"), r#"{"/test/echo":"x"}"#);
    // No parameter, or an empty one: the handler gets none.
    assert_eq!(reply("/test/echo"), r#"{"/test/echo":null}"#);
    assert_eq!(reply("/test/echo,"), r#"{"/test/echo":null}"#);
    assert_eq!(reply("/no/such"), r#"{"/no/such":null}"#);
}

#[test]
fn the_builtins_answer_as_dpdks() {
    register_eal_commands();
    let list = value(&reply("/"), "/");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for cmd in [
        "/",
        "/info",
        "/help",
        "/eal/params",
        "/mempool/info",
        "/ring/list",
    ] {
        assert!(names.contains(&cmd), "{cmd} in {names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "listed in order");
    assert_eq!(
        value(&reply("/help"), "/help"),
        json!("Returns help text for a command. Parameters: string command")
    );
    assert_eq!(
        value(&reply("/help,/info"), "/help"),
        json!({"/info": "Returns DPDK Telemetry information. Takes no parameters"})
    );
    assert_eq!(value(&reply("/help,/info,x"), "/help"), Value::Null);
    let info = value(&reply("/info"), "/info");
    assert_eq!(info["pid"], json!(std::process::id()));
    assert_eq!(info["max_output_len"], json!(MAX_OUTPUT_LEN));
}

#[test]
fn names_and_help_follow_dpdks_rules() {
    let ok = |_: Option<&str>| None;
    assert!(register("no/slash", "", ok).is_err());
    assert!(register("/bad name", "", ok).is_err());
    assert!(register(&format!("/{}", "a".repeat(55)), "", ok).is_err());
    assert!(register(&format!("/{}", "a".repeat(54)), "", ok).is_ok());
    assert!(register("/test/long_help", &"h".repeat(128), ok).is_err());
}

#[test]
fn a_reply_too_long_loses_its_last_elements_and_stays_json() {
    register("/test/big", "A long list", |_| {
        Some((0..10_000u32).collect::<Vec<_>>().into())
    })
    .unwrap();
    let r = reply("/test/big");
    assert!(r.len() < MAX_OUTPUT_LEN);
    let list = value(&r, "/test/big");
    let got = list.as_array().unwrap();
    assert!(got.len() > 1000);
    assert_eq!(
        got[got.len() - 1],
        json!(got.len() - 1),
        "the first ones kept"
    );
    register("/test/big_string", "A long string", |_| {
        Some("x".repeat(20_000).into())
    })
    .unwrap();
    assert_eq!(reply("/test/big_string"), r#"{"/test/big_string":null}"#);
}

#[test]
fn ids_parse_as_strtoul_base_0() {
    assert_eq!(parse_id(Some("7")), Some(7));
    assert_eq!(parse_id(Some("0x1f")), Some(31));
    assert_eq!(parse_id(Some("010")), Some(8));
    assert_eq!(parse_id(Some("0")), Some(0));
    assert_eq!(parse_id(Some("3,hide_zero=true")), Some(3));
    assert_eq!(parse_id(Some("0,x")), Some(0));
    assert_eq!(parse_id(Some("-1")), None);
    assert_eq!(parse_id(Some("abc")), None);
    assert_eq!(parse_id(Some("")), None);
    assert_eq!(parse_id(None), None);
}
