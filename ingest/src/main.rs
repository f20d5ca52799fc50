//! The ingest Lambda (ALB target): reads its configuration once, builds its clients once, and
//! serves each request with [`ingest::Ingest`].

use ingest::{Ingest, IngestConfig};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Error, LambdaEvent, Request, Service as _, service_fn};
use sparklake_aws::adapters::Adapters;
use sparklake_aws::config::AwsSettings;
use sparklake_aws::{alb, load_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sparklake_aws::init_lambda_logging();
    let sdk = load_config().await;
    // Credentials may live in Secrets Manager (SPARKLAKE_AUTH_SECRET_ARN), read once here;
    // the environment wins where both name a variable.
    let secret = match std::env::var(ingest::config::SECRET_ARN_VARIABLE) {
        Ok(arn) if !arn.is_empty() => sparklake_aws::secrets::read(&sdk, &arn).await?,
        _ => Default::default(),
    };
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| secret.get(name).cloned())
    };
    // Unlike `sparklake serve`, an unset SPARKLAKE_AUTH is fatal here: an open endpoint on AWS
    // must be a decision (`none`), never a default.
    let config = IngestConfig::from_lookup(env)?;
    let aws = Adapters::new(&sdk, AwsSettings::from_lookup(env)?);
    let queue = aws.ingest_queue()?;
    let store = aws.store()?;
    let ingest = Ingest {
        config: &config,
        queue: &queue,
        quarantine: &store,
    };
    let handler = service_fn(|request: Request| {
        let ingest = &ingest;
        async move {
            let (response, metrics) = ingest
                .handle_measured(alb::to_handler(request), sparklake_aws::now_millis())
                .await;
            sparklake_aws::emit_metrics(&metrics, "ingest");
            Ok::<_, Error>(alb::from_handler(response))
        }
    });
    // `lambda_http::run`, with the event made safe for lambda_http's conversion first
    // (`alb::sanitize`): an event it cannot convert fails the invocation (the ALB answers 502)
    // instead of panicking inside the conversion.
    let mut adapter = Adapter::from(handler);
    lambda_http::lambda_runtime::run(service_fn(move |mut event: LambdaEvent<LambdaRequest>| {
        let call = alb::sanitize(&mut event.payload).map(|()| adapter.call(event));
        async move {
            match call {
                Ok(response) => response.await,
                Err(e) => Err(Error::from(e)),
            }
        }
    }))
    .await
}
