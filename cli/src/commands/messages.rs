//! Talking to services: `message create|send|queue`, `rest` and `request`.
//!
//! Messages from files are checked before anything is sent (a file that is
//! missing, not JSON, or not a UMF message is a usage error naming the file,
//! the position or the field), so a typo at night never reaches a service.
//! What was sent is printed back: its `mid` and where it went.

use std::path::Path;
use std::time::{Duration, Instant};

use hydra::{ApiResponse, Error, ErrorCode, Hydra, RequestOptions, Route, Umf};
use serde_json::{Map, Value, json};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone};

/// `from` of what the CLI sends, as Node's hydra-cli writes it.
const CLI_ROUTE: &str = "hydra-cli:/";
/// `to` of `message create`'s template (Node's placeholder).
const TEMPLATE_TO: &str = "{serviceName here}:/";

/// `message create`: Node's UMF template, to edit and pass to `message send`
/// or `message queue`. The JSON document is the message in both forms.
pub fn create(_ctx: &Context) -> CliResult<Report> {
    let template = long_form(&Umf::new(TEMPLATE_TO, CLI_ROUTE, json!({})));
    let text = pretty(&template);
    Ok(Report::new(template).text(text))
}

/// `message send <file>`: the message to one live instance of its service
/// (fire and forget, Node's `sendMessage`).
pub fn send(ctx: &Context, file: &Path) -> CliResult<Report> {
    let (mut message, route) = read_message(file)?;
    let hydra = ctx.hydra()?;
    let service = route.service_name.to_lowercase();
    let live = live_instances(hydra, &service)?;
    // Pick the instance here (unless the file names one), so the report can
    // say where the message went: `to` names it.
    let instance = if route.instance.is_empty() {
        let pick = pick_index(live.len());
        let instance = live[pick].instance_id.clone();
        message.to = format!("{instance}@{}", message.to);
        instance
    } else if live.iter().any(|i| i.instance_id == route.instance) {
        route.instance.clone()
    } else {
        return Err(CliError::failed(
            format!("no live instance of {service} is named {}", route.instance),
            format!(
                "`hydra-cli nodes {service}` lists its instances; or drop `{}@` from `to`",
                route.instance
            ),
        ));
    };
    hydra
        .send_message(&message)
        .map_err(|e| message_error("sending the message", &service, e))?;
    let json = json!({
        "mid": message.mid,
        "service": service,
        "instance_id": instance,
        "to": message.to,
        "message": long_form(&message),
    });
    let mut table = Table::new(["field", "value"]);
    table
        .row(["mid", message.mid.as_str()])
        .row(["to", message.to.as_str()])
        .row(["from", message.from.as_str()]);
    Ok(Report::new(json)
        .heading(format!("sent to {service} instance {instance}"))
        .table(table))
}

/// `message queue <file>`: the message onto its service's queue (Node's
/// `queueMessage`: `LPUSH hydra:service:<svc>:mqrecieved`), then the depth.
pub fn queue(ctx: &Context, file: &Path) -> CliResult<Report> {
    let (message, route) = read_message(file)?;
    let hydra = ctx.hydra()?;
    let service = route.service_name;
    hydra
        .queue_message(&message)
        .map_err(|e| CliError::from_hydra("queueing the message", e))?;
    let stats = hydra
        .queue_stats(&service)
        .map_err(|e| CliError::from_hydra("reading the queue's length", e))?;
    let live = hydra
        .get_service_presence(&service.to_lowercase())
        .map_err(|e| CliError::from_hydra("reading the service's presence", e))?
        .len();
    let json = json!({
        "mid": message.mid,
        "service": service,
        "waiting": stats.waiting,
        "live_instances": live,
        "message": long_form(&message),
    });
    let mut report = Report::new(json).text(format!(
        "queued {} for {service}: {} waiting",
        message.mid, stats.waiting
    ));
    if live == 0 {
        report = report.text(format!(
            "note: no instance of {service} is live; the message waits until a consumer takes it"
        ));
    }
    Ok(report)
}

/// `rest <route> [payload]`: an HTTP call through the library's
/// `make_api_request` (balance, failover). A non-2xx answer is printed and
/// exits 1.
pub fn rest(ctx: &Context, route: &str, payload: Option<&Path>) -> CliResult<Report> {
    let parsed = Route::parse(route).map_err(|e| {
        CliError::usage(
            format!("{route:?} is not a route: {}", reason(&e)),
            "write it as svc:[get]/v1/path or instance@svc:[post]/v1/path",
        )
    })?;
    let method = match parsed.http_method.as_deref() {
        Some(method) if !method.is_empty() => method.to_string(),
        _ => {
            return Err(CliError::usage(
                format!("{route:?}: HTTP method not specified in `to` field"),
                "put the method in brackets after the service, e.g. svc:[get]/v1/path",
            ));
        }
    };
    if parsed.api_route.is_empty() {
        return Err(CliError::usage(
            format!("{route:?}: message `to` field does not specify a valid route"),
            "add the path after the method, e.g. svc:[get]/v1/path",
        ));
    }
    let body = match payload {
        Some(file) if method == "get" || method == "delete" => {
            return Err(CliError::usage(
                format!(
                    "Payload not allowed for HTTP '{method}' method (got {})",
                    file.display()
                ),
                "drop the payload file, or use [post], [put] or [patch]",
            ));
        }
        Some(file) => read_json(file)?,
        None => json!({}),
    };
    let hydra = ctx.hydra()?;
    let message = Umf::new(route, CLI_ROUTE, body);
    let service = parsed.service_name.to_lowercase();
    let started = Instant::now();
    let response = hydra
        .make_api_request(&message, RequestOptions::default())
        .map_err(|e| message_error("calling the route", &service, e))?;
    let report = response_report(&response, &service, started.elapsed());
    if (200..300).contains(&response.status) {
        Ok(report)
    } else {
        let (status_message, _) = hydra::http::status_text(response.status);
        Err(CliError::failed(
            format!(
                "{service} answered {} {status_message} to {} {}",
                response.status,
                method.to_uppercase(),
                parsed.api_route
            ),
            "the answer above says why",
        )
        .with_report(report))
    }
}

/// `request <to> <json>`: a request–reply message through the library's
/// `request`; prints the reply.
///
/// Replies come to an instance's channel, so for the length of the call the
/// CLI registers as the `hydra-cli` service (type `non`, as Node's CLI
/// initialises) and removes its instance again at the end. It registers under
/// [`cli_instance_id`], unless another `request` of this user on this host
/// holds that ID right now (then under a random one).
pub fn request(ctx: &Context, to: &str, body: &str, timeout: Duration) -> CliResult<Report> {
    let body: Value = serde_json::from_str(body).map_err(|e| {
        CliError::usage(
            format!("the message body is not valid JSON: {e}"),
            "quote it for the shell, e.g. '{\"ping\": true}'",
        )
    })?;
    if !is_truthy(&body) {
        return Err(CliError::usage(
            format!("the message body must not be empty (got {body})"),
            "send an object, e.g. '{}'",
        ));
    }
    let route = Route::parse(to).map_err(|e| {
        CliError::usage(
            format!("{to:?} is not a route: {}", reason(&e)),
            "write it as svc:/ or instance@svc:/path",
        )
    })?;
    let service = route.service_name.to_lowercase();
    let lookup = ctx.hydra()?;
    live_instances(lookup, &service)?;
    let stable_id = cli_instance_id();
    let stable_id_in_use = lookup
        .get_service_presence(CLI_SERVICE)
        .map_err(|e| CliError::from_hydra("reading hydra-cli's own presence", e))?
        .iter()
        .any(|instance| instance.instance_id == stable_id);
    let hydra = &ctx.connect_as((!stable_id_in_use).then_some(stable_id.as_str()))?;
    // Ctrl-C while registered must not leave the CLI's instance behind:
    // watch from before it exists.
    let interrupts = Interrupts::watch(hydra);
    if let Err(e) = hydra.register_service() {
        let _ = hydra.shutdown();
        interrupts.map(Interrupts::finish);
        return Err(CliError::from_hydra("registering hydra-cli for the reply", e));
    }
    let message = Umf::new(to, CLI_ROUTE, body);
    let started = Instant::now();
    let outcome = hydra.request(&message, timeout);
    let elapsed = started.elapsed();
    // Take the CLI's instance away at once (the process exits next anyway).
    let _ = hydra.shutdown();
    if interrupts.is_some_and(Interrupts::finish) {
        return Err(CliError::failed(
            format!(
                "interrupted after {}: no reply from {service} by then",
                humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
            ),
            "",
        ));
    }
    let reply = outcome.map_err(|e| match e.code() {
        ErrorCode::Timeout => CliError::failed(
            format!("no reply from {service} within {}", humantime::format_duration(timeout)),
            format!(
                "does it answer messages? `hydra-cli nodes {service}` shows its instances; a longer --timeout may help{}",
                if stable_id_in_use {
                    "; another `hydra-cli request` of yours was running, so this one registered under a new ID, \
                     which a Node service learns only after its 3-s presence cache: retry in 3 s"
                } else {
                    ""
                }
            ),
        ),
        _ => message_error("sending the request", &service, e),
    })?;
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let json = json!({
        "mid": message.mid,
        "to": message.to,
        "from": reply.from,
        "rmid": reply.rmid,
        "reply_mid": reply.mid,
        "elapsed_ms": round_ms(elapsed_ms),
        "body": reply.body,
        "reply": long_form(&reply),
    });
    let mut table = Table::new(["field", "value"]);
    table
        .row(["from", reply.from.as_str()])
        .row(["mid", message.mid.as_str()])
        .row(["reply mid", reply.mid.as_str()])
        .row(["elapsed", format!("{:.1} ms", elapsed_ms).as_str()]);
    Ok(Report::new(json)
        .heading(format!("reply from {}", reply.from))
        .table(table)
        .text(pretty(&reply.body)))
}

/// Watches for Ctrl-C and SIGTERM while `request` waits: the first one shuts
/// the handle down (removing the CLI's instance and waking the request).
struct Interrupts {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<bool>,
}

impl Interrupts {
    /// `None` when the signals cannot be watched (the request then runs
    /// without: a Ctrl-C ends it the default way).
    fn watch(hydra: &Hydra) -> Option<Interrupts> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).ok()?;
        let handle = signals.handle();
        let hydra = hydra.clone();
        let thread = std::thread::Builder::new()
            .name("hydra-cli-signals".into())
            .spawn(move || {
                let interrupted = signals.forever().next().is_some();
                if interrupted {
                    let _ = hydra.shutdown();
                }
                interrupted
            })
            .ok()?;
        Some(Interrupts { handle, thread })
    }

    /// Stops watching; true when a signal came.
    fn finish(self) -> bool {
        self.handle.close();
        self.thread.join().unwrap_or(false)
    }
}

/// A service's HTTP answer in Node hydra-cli's shape, snake_case:
/// `{status_code, status_message, status_description, headers, result}`.
/// `result` is the envelope's `result` when the body is a Hydra envelope,
/// the whole JSON body otherwise, or the body as text when it is not JSON.
fn response_report(response: &ApiResponse, service: &str, elapsed: Duration) -> Report {
    let (status_message, status_description) = hydra::http::status_text(response.status);
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        match headers.get_mut(name) {
            Some(Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let parsed = response.json().ok().filter(|_| response.is_json());
    let result = match &parsed {
        Some(Value::Object(body)) if body.contains_key("result") => body["result"].clone(),
        Some(body) => body.clone(),
        None => Value::String(String::from_utf8_lossy(&response.body).into_owned()),
    };
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let json = json!({
        "status_code": response.status,
        "status_message": status_message,
        "status_description": status_description,
        "headers": headers,
        "result": result,
        "instance_id": response.instance_id,
        "elapsed_ms": round_ms(elapsed_ms),
    });
    let tone = match response.status {
        200..=299 => Tone::Good,
        300..=399 => Tone::Warn,
        _ => Tone::Bad,
    };
    let mut summary = Table::new(["status", "service", "instance", "elapsed"]);
    summary.row([
        Cell::new(format!("{} {status_message}", response.status), tone),
        Cell::from(service),
        Cell::from(response.instance_id.as_str()),
        Cell::from(format!("{elapsed_ms:.1} ms")),
    ]);
    let mut header_table = Table::new(["header", "value"]);
    for (name, value) in &response.headers {
        header_table.row([name.as_str(), value.as_str()]);
    }
    let body_text = match parsed {
        Some(body) => pretty(&body),
        None => String::from_utf8_lossy(&response.body).into_owned(),
    };
    Report::new(json)
        .table(summary)
        .heading("headers")
        .table(header_table)
        .heading("body")
        .text(body_text)
}

/// Reads a UMF message from `file`: a usage error names the file and the
/// position (not JSON) or the field (not a message). `from` defaults to
/// `hydra-cli:/`.
fn read_message(file: &Path) -> CliResult<(Umf, Route)> {
    let shown = file.display();
    let value = read_json(file)?;
    let Value::Object(fields) = &value else {
        return Err(CliError::usage(
            format!("{shown} holds {}, not a UMF message object", kind_of(&value)),
            "`hydra-cli message create` prints a template",
        ));
    };
    let missing = |field: &str, what: &str| {
        CliError::usage(
            format!("{shown} is not a UMF message: it has no `{field}` field ({what})"),
            "`hydra-cli message create` prints a template",
        )
    };
    if !fields.get("to").is_some_and(is_truthy) {
        return Err(missing("to", "where it goes, e.g. \"billing:/\""));
    }
    if !["body", "bdy"].iter().any(|f| fields.get(*f).is_some_and(is_truthy)) {
        return Err(missing("body", "the payload, e.g. {}"));
    }
    let mut message = Umf::from_value(value).map_err(|e| {
        CliError::usage(
            format!("{shown} is not a UMF message: {}", reason(&e)),
            "`hydra-cli message create` prints a template",
        )
    })?;
    if message.from.is_empty() {
        message.from = CLI_ROUTE.to_string();
    }
    if message.to.contains("{serviceName here}") {
        return Err(CliError::usage(
            format!("{shown} still has the template's `to`: {:?}", message.to),
            "write the service's name in it, e.g. \"billing:/\"",
        ));
    }
    let route = message.to_route().map_err(|e| {
        CliError::usage(
            format!("{shown}: `to` {:?} is not a route: {}", message.to, reason(&e)),
            "write it as svc:/ or instance@svc:/path",
        )
    })?;
    if route.service_name.is_empty() {
        return Err(CliError::usage(
            format!("{shown}: `to` {:?} names no service", message.to),
            "write it as svc:/ or instance@svc:/path",
        ));
    }
    Ok((message, route))
}

/// A JSON file, or a usage error naming it (and the line and column).
fn read_json(file: &Path) -> CliResult<Value> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::usage(format!("cannot read {shown}: {e}"), "check the path"))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!("{shown} is not valid JSON: {e}"),
            "fix the file at that position",
        )
    })
}

/// The live instances of `service`; none is an error (exit 1).
/// The service name the CLI registers under, as Node's hydra-cli does.
const CLI_SERVICE: &str = "hydra-cli";

/// The instance ID `request` registers under: the same on every run by this
/// user on this host (a name-based uuid in Node's 32-hex form). A Node service
/// keeps a service's instance list for 3 s and replies only to an instance on
/// it; with a new ID per run, a second `request` within 3 s of the first went
/// unanswered, as the service still had the list naming the first run's ID.
pub(crate) fn cli_instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let name = format!("hydra-cli://{user}@{host}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
        .simple()
        .to_string()
}

fn live_instances(hydra: &Hydra, service: &str) -> CliResult<Vec<hydra::Instance>> {
    let live = hydra
        .get_service_presence(service)
        .map_err(|e| CliError::from_hydra("reading the service's presence", e))?;
    if live.is_empty() {
        return Err(no_live_instance(service));
    }
    Ok(live)
}

fn no_live_instance(service: &str) -> CliError {
    CliError::failed(
        format!("no live instance of {service}"),
        format!("`hydra-cli nodes {service}` shows its instances and when they were last seen"),
    )
}

/// A library error from sending to `service`: no instance is exit 1 with
/// the usual advice, the rest as [`CliError::from_hydra`] maps them.
fn message_error(what: &str, service: &str, error: Error) -> CliError {
    match error.code() {
        ErrorCode::ServiceUnavailable => CliError::failed(
            match reason(&error) {
                text if text.starts_with("Unavailable") => format!("no live instance of {service} ({text})"),
                text => format!("{what}: every live instance of {service} failed to answer ({text})"),
            },
            format!("`hydra-cli nodes {service}` shows its instances and when they were last seen"),
        ),
        _ => CliError::from_hydra(what, error),
    }
}

/// The library error's text without its kind prefix where it has one.
fn reason(error: &Error) -> String {
    match error {
        Error::BadRequest(text)
        | Error::NotFound(text)
        | Error::ServiceUnavailable(text)
        | Error::Timeout(text)
        | Error::Malformed(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The message's long form as a JSON value (Node's key order).
fn long_form(message: &Umf) -> Value {
    serde_json::from_str(&message.to_long_json()).unwrap_or(Value::Null)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// JavaScript truthiness (Node treats falsy UMF fields as absent).
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Milliseconds with one decimal, as a JSON number.
fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// A random index below `len` (> 0), as Node's random instance choice;
/// the clock's nanoseconds are random enough for picking an instance.
fn pick_index(len: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    nanos % len
}
