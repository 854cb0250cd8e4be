//! Any text as `.gitlab-ci.yml`: `resolve_str` may return an error but must never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxrunner_pipeline::{PipelineContext, resolve_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An empty directory: includes fail cleanly, and no git or network is touched.
    let dir = std::env::temp_dir().join("oxrunner-pipeline-fuzz-empty");
    let _ = std::fs::create_dir_all(&dir);
    let mut ctx = PipelineContext::new(&dir);
    ctx.offline = true;
    ctx.changed_files = Some(vec!["src/main.rs".into()]);
    ctx.sha = Some("0123456789abcdef0123456789abcdef01234567".into());
    let _ = resolve_str(&ctx, text);
});
