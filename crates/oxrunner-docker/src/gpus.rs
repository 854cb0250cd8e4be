//! `gpus` / `service_gpus`: docker's `--gpus` syntax as the engine's `DeviceRequests`.
//!
//! The value is what `docker run --gpus` takes (and gitlab-runner passes through docker's own parser): `all`,
//! a count, or comma-separated `count=`, `device=`, `driver=`, `capabilities=` fields; device ids may continue
//! after `device=` as further comma-separated fields. Capabilities default to `gpu`.

use bollard::models::DeviceRequest;

use crate::error::DockerError;

/// The device request for `spec` (`None` for an empty value).
pub fn device_request(key: &'static str, spec: &str) -> Result<Option<DeviceRequest>, DockerError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(None);
    }
    let bad = |detail: String| DockerError::Config {
        key,
        value: spec.to_owned(),
        detail,
        hint: "write \"all\", a number, or fields like \"device=0,1\", \"count=2\", \"driver=nvidia\", \
               \"capabilities=compute,utility\"",
    };
    let mut req = DeviceRequest {
        driver: Some(String::new()),
        ..Default::default()
    };
    let mut capabilities: Vec<String> = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    // The field the bare values that follow belong to (docker's csv lets a quoted list continue a field).
    let mut list: Option<&str> = None;
    for field in spec.split(',').map(|f| f.trim().trim_matches('"')) {
        let (name, value) = match field.split_once('=') {
            Some((n, v)) => (n.trim(), v.trim()),
            None if field == "all" => ("count", "all"),
            None if list == Some("device") => ("device", field),
            None if list == Some("capabilities") => ("capabilities", field),
            None => ("count", field),
        };
        match name {
            "count" if value == "all" => req.count = Some(-1),
            "count" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| bad(format!("count {value:?} is not a number")))?;
                req.count = Some(n);
            }
            "device" => devices.push(value.to_owned()),
            "driver" => req.driver = Some(value.to_owned()),
            "capabilities" => capabilities.push(value.to_owned()),
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
        list = matches!(name, "device" | "capabilities").then_some(name);
    }
    if !devices.is_empty() {
        if req.count.is_some() {
            return Err(bad("count and device cannot be used together".to_owned()));
        }
        req.device_ids = Some(devices);
    }
    if capabilities.is_empty() {
        capabilities.push("gpu".to_owned());
    }
    req.capabilities = Some(vec![capabilities]);
    Ok(Some(req))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn docker_cli_forms() {
        let all = device_request("gpus", "all").unwrap().unwrap();
        assert_eq!(all.count, Some(-1));
        assert_eq!(all.capabilities, Some(vec![vec!["gpu".to_owned()]]));
        assert_eq!(device_request("gpus", "2").unwrap().unwrap().count, Some(2));
        let devs = device_request("gpus", "\"device=0,2\",driver=nvidia,capabilities=compute")
            .unwrap()
            .unwrap();
        assert_eq!(devs.device_ids, Some(vec!["0".to_owned(), "2".to_owned()]));
        assert_eq!(devs.driver.as_deref(), Some("nvidia"));
        assert_eq!(devs.capabilities, Some(vec![vec!["compute".to_owned()]]));
        assert!(device_request("gpus", "").unwrap().is_none());
        assert!(device_request("gpus", "flavour=x").is_err());
        assert!(device_request("gpus", "count=2,device=1").is_err());
    }
}
