//! moto server, the real AWS protocol emulator, on a free loopback port.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::{free_port, process::ChildGuard, workspace_root};

pub struct Moto {
    endpoint: String,
    child: Option<Mutex<ChildGuard>>,
    /// Started for one test alone ([`Moto::start`]), so its state is that test's.
    dedicated: bool,
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return path.into();
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        "moto_server".into()
    }
}

fn spawn_server() -> (String, ChildGuard) {
    let port = free_port();
    let mut command = Command::new(moto_binary());
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null());
    // `MOTO_LOG=path`: moto's request log and tracebacks, for when it answers 500.
    match std::env::var_os("MOTO_LOG").map(std::fs::File::create) {
        Some(Ok(file)) => command.stderr(file),
        _ => command.stderr(Stdio::null()),
    };
    let child = ChildGuard::spawn(command)
        .unwrap_or_else(|e| panic!("cannot start moto_server ({}): {e}; run `make venv` or set MOTO_SERVER", moto_binary().display()));
    (format!("http://127.0.0.1:{port}"), child)
}

impl Moto {
    /// A dedicated moto server for one test (use it when a test resets or stops it).
    pub async fn start() -> Moto {
        let (endpoint, child) = spawn_server();
        let moto = Moto { endpoint, child: Some(Mutex::new(child)), dedicated: true };
        moto.wait_ready(Duration::from_secs(30)).await;
        moto
    }

    /// The server this test process shares: `MOTO_ENDPOINT` when `make test` started one,
    /// else one started on first use. Tests isolate themselves by unique resource names.
    pub async fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        static START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        if let Some(moto) = SHARED.get() {
            return moto;
        }
        let _guard = START.lock().await;
        if let Some(moto) = SHARED.get() {
            return moto;
        }
        let moto = match std::env::var("MOTO_ENDPOINT") {
            Ok(endpoint) => {
                let moto = Moto { endpoint, child: None, dedicated: false };
                moto.wait_ready(Duration::from_secs(30)).await;
                moto
            }
            // PR_SET_PDEATHSIG fires when the *thread* that spawned the child ends, so the
            // shared server is spawned from a thread that lives as long as the test process.
            Err(_) => {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let spawned = spawn_server();
                    let _ = tx.send(spawned);
                    loop {
                        std::thread::park();
                    }
                });
                let (endpoint, child) = rx.recv().expect("moto spawn thread");
                let moto = Moto { endpoint, child: Some(Mutex::new(child)), dedicated: false };
                moto.wait_ready(Duration::from_secs(30)).await;
                moto
            }
        };
        let _ = SHARED.set(moto);
        SHARED.get().expect("just set")
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn wait_ready(&self, timeout: Duration) {
        let client = reqwest::Client::new();
        let url = format!("{}/moto-api/", self.endpoint);
        let ready = crate::eventually(timeout, || {
            let request = client.get(&url).timeout(Duration::from_secs(1)).send();
            async move { request.await.is_ok() }
        })
        .await;
        assert!(ready, "moto server at {} did not answer within {timeout:?}", self.endpoint);
    }

    /// SDK configuration pointing every client at this server.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    /// Everything moto recorded (sent SES mail is under `ses.Message`), from a server this
    /// test started for itself. moto builds this from every object it ever held, so on the
    /// shared server its cost would grow with every other test: there it is refused, and a
    /// test reads its own mail from [`crate::mail::MailSink`] instead.
    pub async fn data(&self) -> serde_json::Value {
        assert!(self.dedicated, "Moto::data() on the shared server costs what every test wrote; use TestEnv::mail() or Moto::start()");
        let client = reqwest::Client::new();
        let url = format!("{}/moto-api/data.json", self.endpoint);
        let timeout = Duration::from_secs(10);
        let mut last_error = String::new();
        for _ in 0..3 {
            match client.get(&url).timeout(timeout).send().await {
                Ok(response) if response.status().is_success() => match response.json().await {
                    Ok(value) => return value,
                    Err(e) => last_error = e.to_string(),
                },
                Ok(response) => last_error = format!("status {}", response.status()),
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{url}: no usable answer in 3 attempts of up to {timeout:?} each: {last_error}");
    }

    /// Stops the server (a dedicated one only), e.g. to make AWS "unavailable".
    pub fn stop(&self) {
        if let Some(child) = &self.child {
            child.lock().expect("moto child lock").kill();
        }
    }
}

/// SDK configuration for a test's clients at `endpoint`. moto answers in milliseconds when
/// idle but, being one Python process serving every test of a parallel run, can take
/// seconds under load on a 2-core machine: the attempt timeout is generous for that and
/// still bounds a request that hangs (a test about timeouts sets its own).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "harness"))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(20))
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}
