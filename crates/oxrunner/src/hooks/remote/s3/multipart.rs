//! Pre-signed requests of an S3 multipart upload (create, one per part, complete, abort), so a large archive goes
//! up in parts through URLs like the single PUT does and the credentials stay in the signer.

use std::time::Duration;

use rusty_s3::S3Action;

use super::{MAX_EXPIRY, Presigned, S3Store};

impl S3Store {
    /// `POST ?uploads`: server-side encryption is chosen here, for the whole object (parts carry no SSE headers).
    pub(crate) fn presign_create_multipart(&self, object: &str, expires: Duration) -> Presigned {
        let mut action = self
            .signer()
            .create_multipart_upload(Some(&self.credentials), object);
        for (k, v) in &self.sse_headers {
            action.headers_mut().insert(k.clone(), v.clone());
        }
        Presigned {
            url: action.sign(expires.min(MAX_EXPIRY)),
            headers: self.sse_headers.clone(),
        }
    }

    /// `PUT ?partNumber=N&uploadId=ID`; parts count from 1.
    pub(crate) fn presign_upload_part(
        &self,
        object: &str,
        part: u16,
        upload_id: &str,
        expires: Duration,
    ) -> Presigned {
        let action = self
            .signer()
            .upload_part(Some(&self.credentials), object, part, upload_id);
        Presigned {
            url: action.sign(expires.min(MAX_EXPIRY)),
            headers: Vec::new(),
        }
    }

    /// `POST ?uploadId=ID` and its XML body; `etags` are the parts' in part-number order, from part 1 on.
    pub(crate) fn presign_complete_multipart(
        &self,
        object: &str,
        upload_id: &str,
        etags: &[String],
        expires: Duration,
    ) -> (Presigned, String) {
        let action = self.signer().complete_multipart_upload(
            Some(&self.credentials),
            object,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(expires.min(MAX_EXPIRY));
        (
            Presigned {
                url,
                headers: Vec::new(),
            },
            action.body(),
        )
    }

    /// `DELETE ?uploadId=ID`: the parts stored so far are dropped.
    pub(crate) fn presign_abort_multipart(
        &self,
        object: &str,
        upload_id: &str,
        expires: Duration,
    ) -> Presigned {
        let action = self
            .signer()
            .abort_multipart_upload(Some(&self.credentials), object, upload_id);
        Presigned {
            url: action.sign(expires.min(MAX_EXPIRY)),
            headers: Vec::new(),
        }
    }
}
