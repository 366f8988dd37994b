//! The router starts, forwards one call to a Rust service, and stops on SIGTERM.

mod common;

use common::{RouterProcess, TestService, get, wait_until};
use hydra_testkit::RedisServer;
use serde_json::json;
use std::time::Duration;

#[test]
fn forwards_a_call_and_stops_cleanly_on_sigterm() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let service = TestService::start(&redis, "smoke-svc");
    let url = format!("{}/v1/smoke-svc/echo/7?x=1", router.base_url());
    wait_until("the route to reach the router", Duration::from_secs(15), || {
        get(&url).status == 200
    });
    let answer = get(&url);
    let body = answer.json();
    assert_eq!(body["statusMessage"], "OK");
    assert_eq!(body["result"]["path"], "/v1/smoke-svc/echo/7");
    assert_eq!(body["result"]["query"], "x=1");
    assert_eq!(body["result"]["instance"], service.instance_id());
    let tracer = answer.header("x-hydra-tracer").expect("tracer header").to_string();
    assert_eq!(body["result"]["headers"]["x-hydra-tracer"], tracer.as_str());
    let status = router.terminate();
    assert!(status.success(), "exit status {status}");
}
