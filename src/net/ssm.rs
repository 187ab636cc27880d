//! The AWS calls behind `--via ssm://TARGET`: the target's instance id
//! (`tag:KEY=VALUE` through EC2's `DescribeInstances`, running instances
//! only) and `StartSession` with the
//! `AWS-StartPortForwardingSessionToRemoteHost` document, as the AWS CLI
//! makes it; its response is what `session-manager-plugin` takes. Signed
//! with SigV4 over HTTPS: SSM's JSON 1.1 (`AWS_ENDPOINT_URL_SSM`), EC2's
//! query API (`AWS_ENDPOINT_URL_EC2`); `AWS_ENDPOINT_URL` for both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

use super::ConnectError;

/// The port-forwarding document the AWS CLI uses for a remote host.
pub(super) const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// A started session: what `session-manager-plugin` is given.
pub(super) struct Session {
    pub target: String,
    pub region: String,
    pub endpoint_url: String,
    /// `StartSession`'s response (session id, stream URL, token).
    pub response: Value,
    /// `StartSession`'s request.
    pub request: Value,
    /// For `TerminateSession` when the tunnel ends.
    api: Api,
}

impl Session {
    /// Ends the session on the service side (as the AWS CLI does when
    /// the plugin exits); a failure is only logged.
    pub(super) async fn terminate(&self) {
        let Some(id) = self.response["SessionId"].as_str() else {
            return;
        };
        if let Ok(mut open) = OPEN.lock() {
            open.retain(|s| s.response["SessionId"].as_str() != Some(id));
        }
        let body = json!({"SessionId": id});
        let call = self.api.call("TerminateSession", &body);
        match tokio::time::timeout(std::time::Duration::from_secs(5), call).await {
            Ok(Ok(_)) => tracing::debug!("SSM session {id} terminated"),
            Ok(Err(e)) => tracing::warn!("ending the SSM session {id}: {e}"),
            Err(_) => tracing::warn!("ending the SSM session {id}: no answer in 5s"),
        }
    }
}

/// Where one service's calls go, and how they are signed.
struct Api {
    /// The signing name: `ssm`, `ec2`.
    service: &'static str,
    url: String,
    region: String,
    credentials: aws_credential_types::Credentials,
    http: reqwest::Client,
}

/// Starts a port-forwarding session through `target` (an instance id or
/// `tag:KEY=VALUE`) to `host:port`, listening on `local_port` once the
/// plugin runs.
pub(super) async fn start(
    target: &str,
    region: Option<&str>,
    profile: Option<&str>,
    (host, port): (&str, u16),
    local_port: u16,
) -> Result<Arc<Session>, ConnectError> {
    let layer = || format!("SSM session through {target}");
    let fail = |message: String, hint: Option<&str>| ConnectError::Tunnel {
        layer: layer(),
        message,
        hint: hint.map(str::to_string),
    };
    let region = match region {
        Some(r) => r.to_string(),
        None => crate::aws::configured_region(profile)
            .await
            .map(|(r, _)| r)
            .ok_or_else(|| {
                fail(
                    "no AWS region for the session".into(),
                    Some("pass --region"),
                )
            })?,
    };
    // The region becomes the API's host name: a region's name only.
    if !crate::aws::is_valid_region(&region) {
        return Err(fail(
            format!("{region:?} is not an AWS region name"),
            Some("set AWS_REGION or pass --region (e.g. us-east-1)"),
        ));
    }
    let credentials = crate::aws::credentials(profile, &region)
        .await
        .map_err(|e| {
            fail(
                e.to_string(),
                Some("SSM sessions need AWS credentials, as the AWS CLI's do"),
            )
        })?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("rdsconn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(e.to_string(), None))?;
    let api = |service| Api {
        service,
        url: Api::endpoint(service, &region),
        region: region.clone(),
        credentials: credentials.clone(),
        http: http.clone(),
    };
    let instance = if let Some(tag) = target.strip_prefix("tag:") {
        api("ec2").instance_by_tag(tag).await.map_err(|m| {
            fail(
                m,
                Some("the identity needs ec2:DescribeInstances to find an instance by tag"),
            )
        })?
    } else {
        target.to_string()
    };
    let api = api("ssm");
    let request = json!({
        "Target": instance,
        "DocumentName": DOCUMENT,
        "Parameters": {
            "host": [host],
            "portNumber": [port.to_string()],
            "localPortNumber": [local_port.to_string()],
        },
    });
    // The call runs to its end and registers the session even when the
    // run stops waiting for it (a connect timeout, a signal): a session
    // the service started is always terminated (see `terminate_open`).
    let starting = Starting::new();
    let call = tokio::spawn(async move {
        let _starting = starting;
        let response = api.call("StartSession", &request).await?;
        if response["SessionId"].as_str().is_none() {
            return Err("StartSession answered without a SessionId".to_string());
        }
        let session = Arc::new(Session {
            target: instance,
            region,
            endpoint_url: api.url.clone(),
            response,
            request,
            api,
        });
        if let Ok(mut open) = OPEN.lock() {
            open.push(Arc::clone(&session));
        }
        Ok(session)
    });
    let started = call.await.map_err(|e| e.to_string()).and_then(|r| r);
    started.map_err(|m| {
        fail(
            m,
            Some("the identity needs ssm:StartSession on the instance and the document"),
        )
    })
}

/// Sessions the service started that are not terminated yet.
static OPEN: LazyLock<Mutex<Vec<Arc<Session>>>> = LazyLock::new(Mutex::default);

/// `StartSession` calls still waiting for their answer.
static STARTING: AtomicUsize = AtomicUsize::new(0);

/// Counts one `StartSession` call in [`STARTING`] while it lives.
struct Starting;

impl Starting {
    fn new() -> Self {
        STARTING.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        STARTING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Terminates every session of this run still open, also those whose
/// start the run stopped waiting for: a `StartSession` still in flight
/// gets up to 5 s to answer, so that its session is ended too.
pub(super) async fn terminate_open() {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while STARTING.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let open: Vec<Arc<Session>> = OPEN
        .lock()
        .map(|mut o| o.drain(..).collect())
        .unwrap_or_default();
    for session in open {
        session.terminate().await;
    }
}

impl Api {
    /// The service's endpoint URL in `region`: `AWS_ENDPOINT_URL_SSM` /
    /// `AWS_ENDPOINT_URL_EC2`, then `AWS_ENDPOINT_URL`, then AWS's.
    fn endpoint(service: &str, region: &str) -> String {
        std::env::var(format!("AWS_ENDPOINT_URL_{}", service.to_uppercase()))
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|_| {
                format!(
                    "https://{service}.{region}.{}",
                    crate::aws::partition_of(region).dns_suffix
                )
            })
    }

    /// The one running EC2 instance with tag `KEY=VALUE`.
    async fn instance_by_tag(&self, tag: &str) -> Result<String, String> {
        let (key, value) = tag.split_once('=').ok_or("expected tag:KEY=VALUE")?;
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let body = format!(
            "Action=DescribeInstances&Version=2016-11-15\
             &Filter.1.Name={}&Filter.1.Value.1={}\
             &Filter.2.Name=instance-state-name&Filter.2.Value.1=running",
            enc(&format!("tag:{key}")),
            enc(value)
        );
        let (ok, text) = self
            .send(
                "DescribeInstances",
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                body,
            )
            .await?;
        let at = |path: &[&str]| xml_texts(&text, path);
        if !ok {
            let code = at(&["Errors", "Error", "Code"]).join(" ");
            let message = at(&["Errors", "Error", "Message"]).join(" ");
            return Err(failed("DescribeInstances", &code, &message, &text));
        }
        let ids = at(&[
            "reservationSet",
            "item",
            "instancesSet",
            "item",
            "instanceId",
        ]);
        let tag = format!("{key}={value}");
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "no running EC2 instance in {} has the tag {tag}",
                self.region
            )),
            many => Err(format!(
                "{} running instances have the tag {tag} ({}): name one with ssm://INSTANCE-ID",
                many.len(),
                many.join(", ")
            )),
        }
    }

    /// One JSON 1.1 call, signed; its answer, or the service's error.
    async fn call(&self, action: &str, body: &Value) -> Result<Value, String> {
        let target = format!("AmazonSSM.{action}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let (ok, text) = self.send(&target, &headers, body.to_string()).await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if ok {
            return Ok(value);
        }
        let code = value["__type"]
            .as_str()
            .map_or("", |t| t.rsplit('#').next().unwrap_or(t));
        let message = value["message"]
            .as_str()
            .or_else(|| value["Message"].as_str())
            .unwrap_or("");
        Err(failed(&target, code, message, &text))
    }

    /// One signed POST of `body` with `headers`: whether the service
    /// answered with success, and its answer.
    async fn send(
        &self,
        what: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<(bool, String), String> {
        // `host[:port]` as the URL has it: what the service signs.
        let host = url::Url::parse(&self.url)
            .ok()
            .filter(url::Url::has_host)
            .map(|u| u[url::Position::BeforeHost..url::Position::AfterPort].to_string())
            .ok_or_else(|| format!("invalid {} endpoint URL {:?}", self.service, self.url))?;
        let signed: Vec<(&str, &str)> = std::iter::once(("host", host.as_str()))
            .chain(headers.iter().copied())
            .collect();
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            signed.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let mut request = self.http.post(&self.url).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{what}: {}", crate::error::error_line(&e)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{what}: {e}"))?;
        if status.is_success() {
            return Ok((true, text));
        }
        // An answer without the service's error still says its status.
        Ok((
            false,
            if text.trim().is_empty() {
                status.to_string()
            } else {
                text
            },
        ))
    }
}

/// "`what` failed: CODE MESSAGE", or the start of the answer when it
/// named neither (e.g. a proxy's HTML page).
fn failed(what: &str, code: &str, message: &str, answer: &str) -> String {
    let said = format!("{code} {message}");
    let said = said.trim();
    if said.is_empty() {
        let gist: String = answer
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        format!("{what} failed: {gist}")
    } else {
        format!("{what} failed: {said}")
    }
}

/// The texts of the elements at `path` below the root of `xml` (each step
/// an element name; `item` for the members of EC2's lists). A document
/// that does not parse has none.
fn xml_texts(xml: &str, path: &[&str]) -> Vec<String> {
    fn walk(
        scope: &mut aws_smithy_xml::decode::ScopedDecoder<'_, '_>,
        path: &[&str],
        out: &mut Vec<String>,
    ) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        while let Some(mut tag) = scope.next_tag() {
            if !tag.start_el().matches(first) {
                continue;
            }
            if rest.is_empty() {
                if let Ok(text) = aws_smithy_xml::decode::try_data(&mut tag) {
                    out.push(text.into_owned());
                }
            } else {
                walk(&mut tag, rest, out);
            }
        }
    }
    let mut out = Vec::new();
    let mut doc = aws_smithy_xml::decode::Document::new(xml);
    if let Ok(mut root) = doc.root_element() {
        walk(&mut root, path, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{failed, xml_texts};

    /// EC2's `DescribeInstances` answer (its documented shape): the
    /// instance ids of `instancesSet`, not the ids elsewhere in it.
    #[test]
    fn instance_ids_come_from_the_instances_set() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <ownerId>123456789012</ownerId>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-bff32ccc</imageId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <networkInterfaceSet>
            <item><attachment><instanceId>i-not-this-one</instanceId></attachment></item>
          </networkInterfaceSet>
          <tagSet><item><key>Name</key><value>a &amp; b</value></item></tagSet>
        </item>
        <item><instanceId>i-0fedcba9876543210</instanceId></item>
      </instancesSet>
    </item>
  </reservationSet>
</DescribeInstancesResponse>"#;
        let path = [
            "reservationSet",
            "item",
            "instancesSet",
            "item",
            "instanceId",
        ];
        assert_eq!(
            xml_texts(xml, &path),
            ["i-1234567890abcdef0", "i-0fedcba9876543210"]
        );
        let tag = [
            "reservationSet",
            "item",
            "instancesSet",
            "item",
            "tagSet",
            "item",
            "value",
        ];
        assert_eq!(xml_texts(xml, &tag), ["a & b"]);
        assert!(xml_texts("<DescribeInstancesResponse/>", &path).is_empty());
        assert!(xml_texts("not xml <<", &path).is_empty());
    }

    #[test]
    fn errors_name_the_code_and_message_or_the_start_of_the_answer() {
        let xml = "<Response><Errors><Error><Code>UnauthorizedOperation</Code>\
                   <Message>You are not authorized</Message></Error></Errors>\
                   <RequestID>x</RequestID></Response>";
        let code = xml_texts(xml, &["Errors", "Error", "Code"]).join(" ");
        let message = xml_texts(xml, &["Errors", "Error", "Message"]).join(" ");
        assert_eq!(
            failed("DescribeInstances", &code, &message, xml),
            "DescribeInstances failed: UnauthorizedOperation You are not authorized"
        );
        let page = format!("<html>{}\nsecond line", "x".repeat(500));
        let said = failed("AmazonSSM.StartSession", "", "", &page);
        assert!(
            said.starts_with("AmazonSSM.StartSession failed: <html>xxx"),
            "{said}"
        );
        assert_eq!(
            said.chars().count(),
            "AmazonSSM.StartSession failed: ".len() + 200
        );
    }
}
