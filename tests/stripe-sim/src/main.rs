//! stripe-sim: a local, stateful Stripe API (see README.md beside this crate).
//!
//! `stripe-sim --port 12111 --seed-prices --webhook-url URL --webhook-secret whsec_…`

use std::process::ExitCode;
use std::time::Duration;

use stripe_sim::{ChaosConfig, DunningFinalAction, SimConfig, WebhookEndpointConfig};

const USAGE: &str = "\
stripe-sim: a local, stateful Stripe API (test mode) for development and tests.

USAGE:
    stripe-sim [OPTIONS]

OPTIONS:
    --port <PORT>              Port on 127.0.0.1 [env: STRIPE_SIM_PORT] [default: 12111; 0 = any]
    --seed-prices              Create price_premium_monthly (USD 9.99/month) and
                               price_enterprise_monthly (USD 49.99/month) [env: STRIPE_SIM_SEED_PRICES=1]
    --webhook-url <URL>        Register a webhook endpoint receiving all events
                               [env: STRIPE_SIM_WEBHOOK_URL]
    --webhook-secret <SECRET>  Its signing secret, whsec_…; a comma-separated list signs with
                               each (as Stripe does while a secret is rotated)
                               [env: STRIPE_SIM_WEBHOOK_SECRET; random if unset]
    --webhook-events <LIST>    Comma-separated event types for that endpoint [default: *]
    --chaos                    Duplicate, reorder and delay webhook deliveries [env: STRIPE_SIM_CHAOS=1]
    --chaos-seed <N>           Seed for --chaos [default: 24301]
    --retry-days <LIST>        Days between automatic payment retries [default: 3,5,7]
    --after-retries <ACTION>   cancel | unpaid | past_due, once retries are used up [default: cancel]
    --search-delay-ms <MS>     New objects appear in /search results only after this long,
                               like Stripe's eventually consistent search [default: 0]
    --idempotency-expiry       Idempotency keys expire 24 h (on the request's clock) after first use
    --webhooks-before-response Deliver (attempt once) a request's webhooks before answering it
    -h, --help                 Print this help

Logs go to stderr; RUST_LOG overrides the level (default: info).
";

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

fn parse_args() -> Result<Option<SimConfig>, String> {
    let mut config = SimConfig { port: 12111, ..SimConfig::default() };
    if let Ok(port) = std::env::var("STRIPE_SIM_PORT") {
        config.port = port.parse().map_err(|_| format!("STRIPE_SIM_PORT is not a port: {port}"))?;
    }
    config.seed_prices = env_flag("STRIPE_SIM_SEED_PRICES");
    let mut webhook_url = std::env::var("STRIPE_SIM_WEBHOOK_URL").ok().filter(|s| !s.is_empty());
    let mut webhook_secret = std::env::var("STRIPE_SIM_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty());
    let mut webhook_events = vec!["*".to_string()];
    let mut chaos = env_flag("STRIPE_SIM_CHAOS");
    let mut chaos_seed = ChaosConfig::default().seed;

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => {
                let v = value("--port")?;
                config.port = v.parse().map_err(|_| format!("--port: not a port: {v}"))?;
            }
            "--seed-prices" => config.seed_prices = true,
            "--webhook-url" => webhook_url = Some(value("--webhook-url")?),
            "--webhook-secret" => webhook_secret = Some(value("--webhook-secret")?),
            "--webhook-events" => {
                webhook_events = value("--webhook-events")?.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
            }
            "--chaos" => chaos = true,
            "--chaos-seed" => {
                let v = value("--chaos-seed")?;
                chaos_seed = v.parse().map_err(|_| format!("--chaos-seed: not a number: {v}"))?;
            }
            "--retry-days" => {
                let v = value("--retry-days")?;
                config.retry_schedule = v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|d| d.trim().parse::<u64>().map(|d| Duration::from_secs(d * 86_400)))
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--retry-days: expected comma-separated whole days, got {v}"))?;
            }
            "--after-retries" => {
                config.dunning_final_action = match value("--after-retries")?.as_str() {
                    "cancel" => DunningFinalAction::Cancel,
                    "unpaid" => DunningFinalAction::MarkUnpaid,
                    "past_due" => DunningFinalAction::LeavePastDue,
                    other => return Err(format!("--after-retries: expected cancel, unpaid or past_due, got {other}")),
                }
            }
            "--search-delay-ms" => {
                let v = value("--search-delay-ms")?;
                let ms: u64 = v.parse().map_err(|_| format!("--search-delay-ms: not a number of milliseconds: {v}"))?;
                config.search_delay = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "--idempotency-expiry" => config.idempotency_expiry = true,
            "--webhooks-before-response" => config.webhooks_before_response = true,
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if chaos {
        config.chaos = Some(ChaosConfig { seed: chaos_seed, ..ChaosConfig::default() });
    }
    match (webhook_url, webhook_secret) {
        (Some(url), secret) => {
            config.webhook_endpoints.push(WebhookEndpointConfig { url, secret, enabled_events: webhook_events, chaos: None })
        }
        (None, Some(_)) => return Err("--webhook-secret needs --webhook-url".into()),
        (None, None) => {}
    }
    Ok(Some(config))
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("stripe-sim: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal; `make dev` logs and CI logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stripe-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let has_endpoint = !config.webhook_endpoints.is_empty();
        let seeded = config.seed_prices;
        let sim = match stripe_sim::start(config).await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("stripe-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            base_url = sim.base_url(),
            secret_key = "any sk_test_… key",
            webhook_endpoint = has_endpoint,
            seeded_prices = seeded,
            "ready: set STRIPE_API_BASE={}",
            sim.base_url()
        );
        if seeded {
            tracing::info!("prices: STRIPE_PRICE_PREMIUM=price_premium_monthly STRIPE_PRICE_ENTERPRISE=price_enterprise_monthly");
        }
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("shutting down"),
            Err(e) => tracing::error!(error = %e, "cannot listen for Ctrl-C; shutting down"),
        }
        sim.shutdown().await;
        ExitCode::SUCCESS
    })
}
