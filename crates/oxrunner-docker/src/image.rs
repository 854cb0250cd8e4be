//! Getting the job image onto the engine according to the pull policies.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use oxrunner_config::DockerConfig;
use oxrunner_core::TraceWriter;

use crate::error::{DockerError, is_not_found};
use crate::settings::{PullPolicy, effective_pull_policies};

/// The local image id, or `None` when the engine does not have the image.
async fn local_image(docker: &Docker, image: &str) -> Result<Option<String>, DockerError> {
    match docker.inspect_image(image).await {
        Ok(info) => Ok(Some(info.id.unwrap_or_else(|| image.to_owned()))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(DockerError::api(format!("inspecting image {image}"))(e)),
    }
}

async fn pull(
    docker: &Docker,
    image: &str,
    credentials: Option<&DockerCredentials>,
    platform: &str,
    trace: &TraceWriter,
) -> Result<(), String> {
    trace.info(&format!("Pulling docker image {image} ..."));
    let options = CreateImageOptions {
        from_image: Some(image.to_owned()),
        platform: platform.to_owned(),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), None, credentials.cloned());
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(err);
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Makes sure `image` is on the engine, trying each effective pull policy in turn; returns the image id.
pub async fn ensure_image(
    docker: &Docker,
    config: &DockerConfig,
    image: &str,
    job_policies: &[String],
    credentials: Option<&DockerCredentials>,
    platform: &str,
    trace: &TraceWriter,
) -> Result<String, DockerError> {
    let policies = effective_pull_policies(&config.pull_policy, &config.allowed_pull_policies, job_policies)?;
    let mut last = None;
    let attempts = policies.len();
    for (n, policy) in policies.into_iter().enumerate() {
        // `always` pulls whatever the engine has; only the other policies need to know.
        let present = match policy {
            PullPolicy::Always => None,
            PullPolicy::Never | PullPolicy::IfNotPresent => local_image(docker, image).await?,
        };
        let result = match (policy, present) {
            (PullPolicy::Never, Some(id)) | (PullPolicy::IfNotPresent, Some(id)) => return Ok(id),
            (PullPolicy::Never, None) => Err(DockerError::ImageMissing {
                image: image.to_owned(),
            }),
            (PullPolicy::IfNotPresent, None) | (PullPolicy::Always, _) => {
                pull(docker, image, credentials, platform, trace)
                    .await
                    .map_err(|detail| DockerError::Pull {
                        image: image.to_owned(),
                        detail,
                    })
            }
        };
        match result {
            Ok(()) => {
                if let Some(id) = local_image(docker, image).await? {
                    return Ok(id);
                }
                last = Some(DockerError::Pull {
                    image: image.to_owned(),
                    detail: "the engine reported success but does not have the image".to_owned(),
                });
            }
            Err(e) => {
                // The last failure becomes the job's error message; earlier ones are worth a warning.
                if n + 1 < attempts {
                    let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
                    trace.warning(&format!("{first_line}, trying the next pull policy"));
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| DockerError::ImageMissing {
        image: image.to_owned(),
    }))
}
