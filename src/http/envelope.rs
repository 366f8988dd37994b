//! Hydra's HTTP response envelope (`ServerResponse.sendResponse`, spec §6.3):
//! `{statusCode, statusMessage, statusDescription, result}` with Node's status
//! strings.

use serde_json::{Map, Value, json};

/// Node's `statusMessage` and `statusDescription` for `code`
/// (`lib/server-response.js`); unknown codes get `"<code>"` and
/// `"Unknown statusCode <code>"`.
pub fn status_text(code: u16) -> (String, String) {
    let known = match code {
        200 => Some(("OK", "Request succeeded without error")),
        201 => Some(("Created", "Request fulfilled and new resource created")),
        202 => Some(("Accepted", "Request accepted for processing")),
        204 => Some(("No Content", "Request succeeded, no content to return")),
        301 => Some((
            "Moved Permanently",
            "The resource has been assigned a new permanent URI",
        )),
        302 => Some(("Found", "The resource resides temporarily under a different URI")),
        304 => Some(("Not Modified", "Resource has not been modified since the last request")),
        400 => Some(("Bad Request", "Request is invalid, missing parameters?")),
        401 => Some(("Unauthorized", "User isn't authorized to access this resource")),
        402 => Some(("Payment Required", "This code is not yet in use")),
        403 => Some((
            "Forbidden",
            "The server understood the request but refused to fulfill it",
        )),
        404 => Some(("Not Found", "The requested resource was not found on the server")),
        405 => Some(("Method not allowed", "The method used is not allowed on this resource")),
        406 => Some((
            "Not Acceptable",
            "The resource can't generate a response the client will accept",
        )),
        409 => Some((
            "Conflict",
            "The request conflicts with the current state of the resource",
        )),
        413 => Some((
            "Request Entity Too Large",
            "The request is larger than the server is willing or able to process",
        )),
        429 => Some((
            "Too Many Requests",
            "The user has sent too many requests in a given amount of time",
        )),
        500 => Some(("Server Error", "An error occurred on the server")),
        501 => Some((
            "Method Not Implemented",
            "The requested method isn't supported by the server",
        )),
        502 => Some(("Connection Refused", "The remote server refused the connection")),
        503 => Some((
            "Service Unavailable",
            "The server is currently unable to handle the request due to a temporary overloading or maintenance of the server",
        )),
        _ => None,
    };
    match known {
        Some((message, description)) => (message.to_string(), description.to_string()),
        None => (code.to_string(), format!("Unknown statusCode {code}")),
    }
}

/// `{statusCode, statusMessage, statusDescription, result}` for `code`.
pub fn envelope(code: u16, result: Value) -> Value {
    let (message, description) = status_text(code);
    json!({
        "statusCode": code,
        "statusMessage": message,
        "statusDescription": description,
        "result": result,
    })
}

/// The envelope Node builds around an error: `result: {"reason": …}`.
pub fn error_envelope(code: u16, reason: &str) -> Value {
    envelope(code, json!({ "reason": reason }))
}

/// Node's client-side response object for a JSON body: the envelope for
/// `status` with the body's top-level keys merged over it. Unlike Node, a
/// `statusCode` in the body does not override the real HTTP status (spec
/// §15.12); the body's own value is kept as `bodyStatusCode` when it differs.
pub(crate) fn merge_json_body(status: u16, body: Value) -> Value {
    let mut merged = match envelope(status, json!({})) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    match body {
        Value::Object(fields) => {
            for (key, value) in fields {
                if key == "statusCode" {
                    if value != json!(status) {
                        merged.insert("bodyStatusCode".into(), value);
                    }
                    continue;
                }
                merged.insert(key, value);
            }
        }
        // Node merges an array key by key; keep it whole as the result instead.
        other => {
            merged.insert("result".into(), other);
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_use_nodes_strings() {
        assert_eq!(
            envelope(200, json!({"hello": "world"})).to_string(),
            r#"{"statusCode":200,"statusMessage":"OK","statusDescription":"Request succeeded without error","result":{"hello":"world"}}"#
        );
        assert_eq!(
            error_envelope(503, "Unavailable nope-service instances").to_string(),
            r#"{"statusCode":503,"statusMessage":"Service Unavailable","statusDescription":"The server is currently unable to handle the request due to a temporary overloading or maintenance of the server","result":{"reason":"Unavailable nope-service instances"}}"#
        );
        assert_eq!(
            status_text(418),
            ("418".to_string(), "Unknown statusCode 418".to_string())
        );
    }

    #[test]
    fn a_body_status_code_does_not_override_the_real_status() {
        let merged = merge_json_body(200, json!({"statusCode": 201, "result": {"a": 1}}));
        assert_eq!(merged["statusCode"], 200);
        assert_eq!(merged["bodyStatusCode"], 201);
        assert_eq!(merged["result"], json!({"a": 1}));
        assert_eq!(merge_json_body(200, json!([1, 2]))["result"], json!([1, 2]));
    }
}
