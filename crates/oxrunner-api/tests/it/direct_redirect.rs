//! A `direct_download` request hands the object-storage URL back only for the redirects gitlab-runner takes as
//! one (302 Found, 307 Temporary Redirect); any other redirect is an error, which the caller answers with the
//! ordinary download.

use oxrunner_api::{ApiError, DirectDownload};

use crate::common::{Req, resp, start};

async fn answer_to(status: u16) -> Result<DirectDownload, ApiError> {
    let srv =
        start(move |_r: &Req, _| resp(status, &[("Location", "/storage/blob?X-Amz-Signature=sig")], ""))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.zip");
    let got = srv.client().download_artifacts_or_redirect(9, "tok", &dest).await;
    assert!(!dest.exists());
    got
}

#[tokio::test]
async fn only_302_and_307_hand_over_to_object_storage() {
    for status in [302, 307] {
        match answer_to(status).await {
            Ok(DirectDownload::Redirect(url)) => assert_eq!(url.path(), "/storage/blob"),
            other => panic!("{status}: {other:?}"),
        }
    }
    for status in [301, 303, 308] {
        match answer_to(status).await {
            Err(ApiError::Status { status: got, .. }) => assert_eq!(got, status),
            other => panic!("{status}: {other:?}"),
        }
    }
}
