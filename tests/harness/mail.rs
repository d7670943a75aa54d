//! What the code under test sent through SES, as this test's own record.
//!
//! moto keeps sent mail only inside its whole-server state (`/moto-api/data.json`), which
//! serialises everything every test has written so far: its cost grows with the suite, not
//! with the test, and late in a full run one call takes longer than any sane timeout. So
//! each [`crate::TestEnv`] points its SES clients at a [`MailSink`]: a recording proxy in
//! front of the same moto server. moto still decides (identities, `MessageRejected`, the
//! message id); the sink only remembers the `SendEmail` requests it answered, so reading
//! them costs what this test sent.

use serde_json::Value;

use crate::{moto::sdk_config_for, proxy::Proxy, Moto};

/// SES v2 `SendEmail` is `POST /v2/email/outbound-emails`.
const SEND_EMAIL_PATH: &str = "/v2/email/outbound-emails";

/// One message SES accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    pub message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    /// `EmailTags` as `(name, value)`.
    pub tags: Vec<(String, String)>,
}

pub struct MailSink {
    proxy: Proxy,
}

impl MailSink {
    /// A sink forwarding to `moto`.
    pub async fn start(moto: &Moto) -> MailSink {
        MailSink { proxy: Proxy::recording(moto.endpoint()).await }
    }

    /// The endpoint to give SES clients (`AWS_ENDPOINT_URL_SESV2` for a child process).
    pub fn url(&self) -> &str {
        &self.proxy.url
    }

    /// An SDK configuration whose clients reach moto through this sink.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(self.url()).await
    }

    /// Every message SES accepted through this sink, in the order SES answered.
    pub fn sent(&self) -> Vec<SentMail> {
        self.proxy
            .exchanges()
            .into_iter()
            .filter(|e| e.method == "POST" && e.path.starts_with(SEND_EMAIL_PATH) && (200..300).contains(&e.status))
            .map(|e| {
                let request: Value =
                    serde_json::from_slice(&e.request_body).unwrap_or_else(|err| panic!("SendEmail request is not JSON: {err}"));
                let response: Value = serde_json::from_slice(&e.response_body).unwrap_or(Value::Null);
                parse(&request, &response)
            })
            .collect()
    }

    /// The accepted messages with `address` among their recipients.
    pub fn sent_to(&self, address: &str) -> Vec<SentMail> {
        self.sent().into_iter().filter(|m| m.to.iter().any(|to| to == address)).collect()
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn parse(request: &Value, response: &Value) -> SentMail {
    let simple = &request["Content"]["Simple"];
    SentMail {
        message_id: text(&response["MessageId"]).unwrap_or_default(),
        from: text(&request["FromEmailAddress"]).unwrap_or_default(),
        to: request["Destination"]["ToAddresses"].as_array().into_iter().flatten().filter_map(text).collect(),
        subject: text(&simple["Subject"]["Data"]).unwrap_or_default(),
        html: text(&simple["Body"]["Html"]["Data"]),
        text: text(&simple["Body"]["Text"]["Data"]),
        tags: request["EmailTags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (text(&t["Name"]).unwrap_or_default(), text(&t["Value"]).unwrap_or_default()))
            .collect(),
    }
}
