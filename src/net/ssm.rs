//! The AWS Systems Manager calls behind `--via ssm://TARGET`: the target's
//! instance id (`tag:KEY=VALUE` through `DescribeInstanceInformation`,
//! which lists only instances SSM manages) and `StartSession` with the
//! `AWS-StartPortForwardingSessionToRemoteHost` document, as the AWS CLI
//! makes them; its response is what `session-manager-plugin` takes.
//! JSON 1.1 over HTTPS, signed with SigV4 (`AWS_ENDPOINT_URL_SSM` /
//! `AWS_ENDPOINT_URL` select another endpoint).

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
        let body = json!({"SessionId": id});
        let call = self.api.call("TerminateSession", &body);
        match tokio::time::timeout(std::time::Duration::from_secs(5), call).await {
            Ok(Ok(_)) => tracing::debug!("SSM session {id} terminated"),
            Ok(Err(e)) => tracing::warn!("ending the SSM session {id}: {e}"),
            Err(_) => tracing::warn!("ending the SSM session {id}: no answer in 5s"),
        }
    }
}

/// Where SSM calls go, and how they are signed.
struct Api {
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
) -> Result<Session, ConnectError> {
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
    let credentials = crate::aws::credentials(profile, &region)
        .await
        .map_err(|e| {
            fail(
                e.to_string(),
                Some("SSM sessions need AWS credentials, as the AWS CLI's do"),
            )
        })?;
    let partition = crate::aws::partition_of(&region);
    let url = std::env::var("AWS_ENDPOINT_URL_SSM")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| format!("https://ssm.{region}.{}", partition.dns_suffix));
    let http = reqwest::Client::builder()
        .user_agent(concat!("rdsconn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(e.to_string(), None))?;
    let api = Api {
        url,
        region: region.clone(),
        credentials,
        http,
    };
    let instance = if let Some(tag) = target.strip_prefix("tag:") {
        api.instance_by_tag(tag).await.map_err(|m| fail(m, None))?
    } else {
        target.to_string()
    };
    let request = json!({
        "Target": instance,
        "DocumentName": DOCUMENT,
        "Parameters": {
            "host": [host],
            "portNumber": [port.to_string()],
            "localPortNumber": [local_port.to_string()],
        },
    });
    let response = api.call("StartSession", &request).await.map_err(|m| {
        fail(
            m,
            Some("the identity needs ssm:StartSession on the instance and the document"),
        )
    })?;
    if response["SessionId"].as_str().is_none() {
        return Err(fail(
            "StartSession answered without a SessionId".into(),
            None,
        ));
    }
    Ok(Session {
        target: instance,
        region,
        endpoint_url: api.url.clone(),
        response,
        request,
        api,
    })
}

impl Api {
    /// The one managed instance with tag `KEY=VALUE`.
    async fn instance_by_tag(&self, tag: &str) -> Result<String, String> {
        let (key, value) = tag.split_once('=').ok_or("expected tag:KEY=VALUE")?;
        let found = self
            .call(
                "DescribeInstanceInformation",
                &json!({"Filters": [{"Key": format!("tag:{key}"), "Values": [value]}]}),
            )
            .await?;
        let ids: Vec<&str> = found["InstanceInformationList"]
            .as_array()
            .map(|l| l.iter().filter_map(|i| i["InstanceId"].as_str()).collect())
            .unwrap_or_default();
        match ids.as_slice() {
            [one] => Ok((*one).to_string()),
            [] => Err(format!(
                "no instance managed by SSM in {} has the tag {key}={value}",
                self.region
            )),
            many => Err(format!(
                "{} instances have the tag {key}={value} ({}): name one with ssm://INSTANCE-ID",
                many.len(),
                many.join(", ")
            )),
        }
    }

    /// One JSON 1.1 call, signed; its answer, or the service's error.
    async fn call(&self, action: &str, body: &Value) -> Result<Value, String> {
        let body = body.to_string();
        let target = format!("AmazonSSM.{action}");
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    u.port()
                        .map_or_else(|| h.to_string(), |p| format!("{h}:{p}"))
                })
            })
            .ok_or_else(|| format!("invalid SSM endpoint URL {:?}", self.url))?;
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ssm")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let mut request = self.http.post(&self.url).body(body.clone());
        for (name, value) in headers.iter().filter(|(n, _)| *n != "host") {
            request = request.header(*name, *value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{target}: {}", chain(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["__type"].as_str().map_or_else(
            || status.to_string(),
            |t| t.rsplit('#').next().unwrap_or(t).to_string(),
        );
        let message = value["message"]
            .as_str()
            .or_else(|| value["Message"].as_str())
            .unwrap_or("");
        Err(format!("{target} failed: {code} {message}")
            .trim_end()
            .to_string())
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
