//! Runner lifecycle endpoints: register, verify, unregister, token reset (§1.3–§1.6).

use serde::Serialize;

use super::Client;
use super::transport::{RUNNER_TOKEN, decode_json, is_json, status_error};
use crate::error::ApiError;
use crate::redact::redact_url;
use crate::wire::{
    RegisterRunnerRequest, RegisterRunnerResponse, ResetTokenResponse, RunnerInfo, VerifyRunnerResponse,
};

#[derive(Serialize)]
struct VerifyBody<'a> {
    info: &'a RunnerInfo,
    token: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    system_id: &'a str,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_id: Option<&'a str>,
}

impl Client {
    /// `POST /runners` with a registration token; 201 → the new runner's token.
    /// 410 means registration tokens are disabled ([`ApiError::Gone`]).
    pub async fn register_runner(
        &self,
        req: &RegisterRunnerRequest,
    ) -> Result<RegisterRunnerResponse, ApiError> {
        let url = self.endpoint("runners")?;
        let shown = redact_url(url.as_str());
        let resp = self
            .send(&url, |http| {
                let b = http
                    .post(url.clone())
                    .header(RUNNER_TOKEN, &req.token)
                    .header("Accept", "application/json")
                    .json(req);
                async move { Ok(b) }
            })
            .await?;
        if resp.status().as_u16() == 201 {
            return decode_json(resp, &shown).await;
        }
        Err(match status_error(resp, &shown).await {
            ApiError::Forbidden {
                url_redacted,
                message,
            } => ApiError::Forbidden {
                url_redacted,
                message: format!("forbidden (check registration token): {message}"),
            },
            other => other,
        })
    }

    /// `POST /runners/verify`; 200 with JSON, or with plain text from older GitLab (then the result
    /// is all zero/empty and only means "the token is valid").
    pub async fn verify_runner(
        &self,
        token: &str,
        system_id: &str,
        info: &RunnerInfo,
    ) -> Result<VerifyRunnerResponse, ApiError> {
        let url = self.endpoint("runners/verify")?;
        let shown = redact_url(url.as_str());
        let body = VerifyBody {
            info,
            token,
            system_id,
        };
        let resp = self
            .send(&url, |http| {
                let b = http
                    .post(url.clone())
                    .header(RUNNER_TOKEN, token)
                    .header("Accept", "application/json")
                    .json(&body);
                async move { Ok(b) }
            })
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(status_error(resp, &shown).await);
        }
        if is_json(resp.headers()) {
            decode_json(resp, &shown).await
        } else {
            Ok(VerifyRunnerResponse::default())
        }
    }

    /// `DELETE /runners` (legacy tokens): 204.
    pub async fn unregister_runner(&self, token: &str) -> Result<(), ApiError> {
        self.delete_runner("runners", token, None).await
    }

    /// `DELETE /runners/managers` (`glrt-` tokens): removes only this runner manager.
    pub async fn unregister_runner_manager(&self, token: &str, system_id: &str) -> Result<(), ApiError> {
        self.delete_runner("runners/managers", token, Some(system_id))
            .await
    }

    async fn delete_runner(&self, path: &str, token: &str, system_id: Option<&str>) -> Result<(), ApiError> {
        let url = self.endpoint(path)?;
        let shown = redact_url(url.as_str());
        let body = TokenBody { token, system_id };
        let resp = self
            .send(&url, |http| {
                let b = http.delete(url.clone()).header(RUNNER_TOKEN, token).json(&body);
                async move { Ok(b) }
            })
            .await?;
        if resp.status().as_u16() == 204 {
            return Ok(());
        }
        Err(status_error(resp, &shown).await)
    }

    /// `POST /runners/reset_authentication_token`: the token travels in the body only.
    pub async fn reset_token(&self, token: &str) -> Result<ResetTokenResponse, ApiError> {
        let url = self.endpoint("runners/reset_authentication_token")?;
        let shown = redact_url(url.as_str());
        let body = TokenBody {
            token,
            system_id: None,
        };
        let resp = self
            .send(&url, |http| {
                let b = http
                    .post(url.clone())
                    .header("Accept", "application/json")
                    .json(&body);
                async move { Ok(b) }
            })
            .await?;
        if resp.status().as_u16() == 201 {
            return decode_json(resp, &shown).await;
        }
        Err(status_error(resp, &shown).await)
    }

    /// `POST /runners/:id/reset_authentication_token` with a personal access token in `PRIVATE-TOKEN` and no
    /// body (`reset-token --pat`): works when the runner's own token is lost or expired.
    pub async fn reset_token_with_pat(
        &self,
        runner_id: i64,
        pat: &str,
    ) -> Result<ResetTokenResponse, ApiError> {
        let url = self.endpoint(&format!("runners/{runner_id}/reset_authentication_token"))?;
        let shown = redact_url(url.as_str());
        let resp = self
            .send(&url, |http| {
                let b = http
                    .post(url.clone())
                    .header("Accept", "application/json")
                    .header("PRIVATE-TOKEN", pat);
                async move { Ok(b) }
            })
            .await?;
        if resp.status().as_u16() == 201 {
            return decode_json(resp, &shown).await;
        }
        Err(status_error(resp, &shown).await)
    }
}
