//! Two services register, each finds the other, one asks the other a question
//! over pub/sub (request–reply) and calls its HTTP route, and both shut down
//! cleanly.
//!
//! Run with `scripts/demo`, or `cargo run --example quickstart` with
//! `HYDRA_REDIS_URL` pointing at a Redis (default `redis://127.0.0.1:6379/15`).

use std::time::Duration;

use hydra::{Config, HttpResponse, HttpRoutes, Hydra, Instance, RequestOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    // A service name is all the configuration needed; HYDRA_REDIS_URL, if set,
    // says where Redis is.
    let billing = Hydra::init(
        Config::builder()
            .service_name("billing")
            .service_description("charges customers")
            .service_version("1.0.0")
            .apply_env()?
            .build()?,
    )?;
    let invoices = Hydra::init(
        Config::builder()
            .service_name("invoices")
            .service_description("renders invoices")
            .service_version("2.1.0")
            .service_port("8000-8999")
            .apply_env()?
            .build()?,
    )?;
    println!("Redis: {}", billing.config().redis().display_url());

    // invoices answers requests; handlers run on a worker pool.
    invoices.on_message(|h, msg| {
        let total = msg.body["amount"].as_f64().unwrap_or(0.0) * 1.2;
        h.reply(&msg, json!({"invoice": "INV-1042", "total": total}))?;
        Ok(())
    })?;

    for hydra in [&billing, &invoices] {
        let info = hydra.register_service()?;
        println!(
            "registered {:<8} instance {} at {}:{}",
            info.service_name,
            hydra.get_instance_id(),
            info.service_ip,
            info.service_port
        );
    }

    // invoices also serves an HTTP route; its routes are registered in Redis.
    let port = invoices.serve_http(HttpRoutes::new().get("/v1/invoices/:id", |h, req| {
        HttpResponse::send_response(
            200,
            json!({"invoice": req.param("id"), "servedBy": h.get_instance_id()}),
        )
    }))?;
    println!("invoices serves HTTP on port {port}");

    println!("\n-- discovery --");
    show_presence("billing", "invoices", &billing.get_service_presence("invoices")?);
    show_presence("invoices", "billing", &invoices.get_service_presence("billing")?);
    let names: Vec<String> = billing.get_services()?.into_iter().map(|s| s.service_name).collect();
    println!("services registered in this Redis db: {}", names.join(", "));

    println!("\n-- messaging --");
    let question = billing.create_umf_message("invoices:/", json!({"amount": 100}));
    let answer = billing.request(&question, Duration::from_secs(2))?;
    println!("billing  asked    invoices {}", question.to_short_json());
    println!("invoices answered billing  {}", answer.to_short_json());
    invoices.send_to_health_log("info", "rendered invoice INV-1042")?;

    println!("\n-- HTTP --");
    let call = billing.create_umf_message("invoices:[get]/v1/invoices/INV-1042", json!({}));
    let response = billing.make_api_request(&call, RequestOptions::default())?;
    println!(
        "GET invoices /v1/invoices/INV-1042 -> {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    println!(
        "routes known to Redis: {:?}",
        billing.get_all_service_routes()?.get("invoices")
    );

    println!("\n-- queue --");
    // billing queues work for invoices; an invoices worker completes it.
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let worker = invoices.queue_worker("invoices", 1, move |queued| {
        let _ = done_tx.try_send(queued.message.body.clone());
        Ok(())
    })?;
    billing.queue_message(&billing.create_umf_message("invoices:/", json!({"render": "INV-1043"})))?;
    let rendered = done_rx.recv_timeout(Duration::from_secs(5))?;
    println!("invoices' queue worker completed {rendered}");
    worker.stop(); // lets the worker finish marking the message completed
    println!("queue stats: {:?}", billing.queue_stats("invoices")?);

    println!("\n-- presence and health records --");
    for svc in billing.get_service_health_all()? {
        if svc.service.service_name != "billing" && svc.service.service_name != "invoices" {
            continue;
        }
        println!("{}:", svc.service.service_name);
        for instance in &svc.presence {
            println!("  presence {}", serde_json::to_string(instance)?);
        }
        for health in &svc.health {
            println!("  health   {health}");
        }
        for entry in svc.log.iter().take(3) {
            println!("  log      {}", serde_json::to_string(entry)?);
        }
    }

    println!("\n-- shutdown --");
    let invoices_id = invoices.get_instance_id().to_string();
    invoices.shutdown()?;
    let still_there = billing
        .get_service_presence("invoices")?
        .iter()
        .any(|i| i.instance_id == invoices_id);
    println!("invoices shut down; billing still sees it: {still_there}");
    billing.shutdown()?;
    std::thread::sleep(Duration::from_millis(10));
    println!("billing shut down; done.");
    Ok(())
}

fn show_presence(who: &str, target: &str, instances: &[Instance]) {
    for instance in instances {
        println!(
            "{who:<8} finds {target:<8} {} v{} at {}:{} (pid {}, heartbeat {}s ago)",
            instance.instance_id, instance.version, instance.ip, instance.port, instance.process_id, instance.elapsed
        );
    }
    if instances.is_empty() {
        println!("{who:<8} finds no {target}");
    }
}
