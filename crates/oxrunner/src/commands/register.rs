//! `oxrunner register`: binds a runner to GitLab and appends it to config.toml, as `gitlab-runner register` does.
//!
//! Two token kinds exist (runner-api.md §1.2–1.4): a legacy registration token goes through `POST /runners`; a
//! `glrt-` authentication token (a runner created in the GitLab UI) is only verified.

use std::process::ExitCode;

use tokio::signal::unix::{Signal, SignalKind, signal};

use anyhow::{Context, bail};
use oxrunner_api::{ApiError, RegisterRunnerRequest, RunnerInfo};
use oxrunner_config::{ConfigDocument, ExecutorKind, RunnerConfig};

use super::common::{config_path, short};
use crate::cli::RegisterArgs;
use crate::executors;
use crate::flags::{self, Overlay};
use crate::prompt;
use crate::runner::{client_for, config_dir, runner_info};

pub async fn run(mut args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(&args.config);
    let interactive = !args.non_interactive.unwrap_or(false);
    let mut doc = ConfigDocument::open_or_new(&path)?;
    let template = args
        .template_config
        .as_deref()
        .map(flags::template::load)
        .transpose()?;
    take_from_template(&mut args, template.as_ref());
    // Everything that can be checked here is checked before GitLab creates the runner, so that a mistake in the
    // command line leaves nothing behind.
    refuse_unsupported_executor(&args)?;
    check_local_settings(&args, interactive, template.as_ref())?;
    let url = resolve_url(&mut args, interactive)?;

    // A glrt- token given as --registration-token is treated as an authentication token, as gitlab-runner does.
    let (auth_token, legacy_token) = pick_token(&mut args, interactive)?;
    let client = client_for(
        &url,
        args.tls_ca_file.as_deref(),
        args.tls_cert_file.as_deref(),
        args.tls_key_file.as_deref(),
        &path,
    )?;
    let system_id = oxrunner_config::system_id::load_or_create(&config_dir(&path))?;
    let executor_for_info = ExecutorKind::parse(args.executor.as_deref().unwrap_or("shell"));
    let info = runner_info(&executor_for_info, args.shell.as_deref());

    let (registered, watch) = if let Some(token) = auth_token {
        check_server_side_args_absent(&args, args.registration_token.is_some())?;
        verify(&client, token, &system_id, &info).await?
    } else if let Some(reg_token) = legacy_token {
        register_legacy(&mut args, interactive, &client, reg_token, info).await?
    } else {
        bail!(
            "no token given\nhint: pass --token glrt-... (a runner created in the GitLab UI) or --registration-token"
        );
    };

    // From here on the runner exists in GitLab: a failure, or Ctrl-C at a question, removes it again unless
    // --leave-runner says otherwise.
    let keep = args.leave_runner.unwrap_or(false);
    let on_interrupt = remove_on_interrupt(
        client.clone(),
        (!keep).then(|| registered.clone()),
        system_id.clone(),
        watch,
    )
    .await;
    let saved = local_half(|| {
        write_runner(
            &mut args,
            interactive,
            &url,
            &registered,
            template.as_ref(),
            &mut doc,
        )
    });
    if let Some(task) = on_interrupt {
        task.abort();
    }
    if let Err(err) = saved {
        if !args.leave_runner.unwrap_or(false) {
            rollback_interruptible(&client, &registered, &system_id).await;
        }
        return Err(err);
    }
    warn_limits_above_concurrent(&doc);
    outln!(
        "Runner registered successfully. Feel free to start it, but if it's running already the config should be automatically reloaded!"
    )?;
    outln!()?;
    outln!(
        "Configuration (with the authentication token) was saved in \"{}\"",
        path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the local half, whose questions block on the terminal, so that the runtime keeps serving the interrupt
/// handler on another thread meanwhile.
fn local_half<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Ctrl-C watched from just before the request that creates the runner: the stream, and whether Ctrl-C already
/// came while GitLab was answering.
struct Watch {
    interrupts: Option<Signal>,
    interrupted: bool,
}

/// The request that makes GitLab create (or verify) the runner, with Ctrl-C already watched when it is sent. A
/// Ctrl-C while it is on its way waits for GitLab's answer, so that a runner it created can be removed again; a
/// second Ctrl-C quits at once.
async fn creating<T>(call: impl Future<Output = Result<T, ApiError>>) -> anyhow::Result<(T, Watch)> {
    let Ok(mut sig) = signal(SignalKind::interrupt()) else {
        let value = call.await.map_err(api_error)?;
        let watch = Watch {
            interrupts: None,
            interrupted: false,
        };
        return Ok((value, watch));
    };
    tokio::pin!(call);
    let (result, interrupted) = tokio::select! {
        r = &mut call => (r, false),
        _ = sig.recv() => {
            errln!("Interrupted: waiting for GitLab's answer to remove the runner again (press Ctrl-C again to quit now)");
            tokio::select! {
                r = &mut call => (r, true),
                _ = sig.recv() => std::process::exit(130),
            }
        }
    };
    let value = result.map_err(api_error)?;
    let watch = Watch {
        interrupts: Some(sig),
        interrupted,
    };
    Ok((value, watch))
}

/// gitlab-runner removes a runner it has just created when registration is interrupted (SIGINT); so does this.
///
/// The handler was installed before GitLab was asked ([`creating`]): `tokio::signal::ctrl_c()` in the watching
/// task would install it only when the task is first polled, and a Ctrl-C before that killed the process with
/// the runner left in GitLab.
/// `registered` is `None` with `--leave-runner`: Ctrl-C then only stops the command.
async fn remove_on_interrupt(
    client: oxrunner_api::Client,
    registered: Option<Registered>,
    system_id: String,
    watch: Watch,
) -> Option<tokio::task::JoinHandle<()>> {
    if watch.interrupted {
        if let Some(reg) = &registered {
            rollback_interruptible(&client, reg, &system_id).await;
        }
        std::process::exit(130);
    }
    let Some(mut interrupts) = watch.interrupts else {
        if let Some(reg) = &registered {
            errln!(
                "WARNING: cannot watch for Ctrl-C: interrupting now leaves runner {} in GitLab",
                reg.id
            );
        }
        return None;
    };
    Some(tokio::spawn(async move {
        if interrupts.recv().await.is_some() {
            errln!("Interrupted: registration did not finish");
            if let Some(reg) = &registered {
                rollback_interruptible(&client, reg, &system_id).await;
            }
            // The main task is blocked in a question on the terminal: nothing else is left to clean up.
            std::process::exit(130);
        }
    }))
}

/// [`rollback`], given up on a (further) Ctrl-C: our handler stays installed, so without this a user waiting for
/// an unresponsive GitLab could not stop the command. The warning names what may be left behind.
async fn rollback_interruptible(client: &oxrunner_api::Client, reg: &Registered, system_id: &str) {
    let Ok(mut again) = signal(SignalKind::interrupt()) else {
        rollback(client, reg, system_id).await;
        return;
    };
    tokio::select! {
        () = rollback(client, reg, system_id) => {}
        _ = again.recv() => {
            errln!(
                "WARNING: interrupted again while removing runner {} from GitLab: it may still exist\nhint: delete runner {} in GitLab (Settings > CI/CD > Runners)",
                reg.id,
                reg.id
            );
            std::process::exit(130);
        }
    }
}

/// The local half of registration: the settings asked for after GitLab answered, the runner entry, the file.
fn write_runner(
    args: &mut RegisterArgs,
    interactive: bool,
    url: &str,
    registered: &Registered,
    template: Option<&toml::Table>,
    doc: &mut ConfigDocument,
) -> anyhow::Result<()> {
    let (name, executor) = resolve_local_settings(args, interactive)?;
    let overlay = Overlay::build(&args.upstream.0, &executor)?;
    flags::overlay::warn_not_written(&overlay, &executor);
    let runner = build_runner(args, &name, url, &executor, registered, &overlay, template)?;
    doc.append_runner(&runner);
    doc.save()
        .with_context(|| format!("cannot save {}", doc.path().display()))
}

/// Settings the template gives that register needs before the merge (gitlab-runner merges the template first,
/// so its URL, executor or name are used when no flag gives one).
fn take_from_template(args: &mut RegisterArgs, template: Option<&toml::Table>) {
    let take = |slot: &mut Option<String>, key: &str| {
        if slot.as_deref().is_none_or(str::is_empty)
            && let Some(v) = flags::template::string(template, key)
        {
            *slot = Some(v.to_string());
        }
    };
    take(&mut args.url, "url");
    take(&mut args.executor, "executor");
    take(&mut args.name, "name");
    take(&mut args.shell, "shell");
    let docker_image = template
        .and_then(|t| t.get("docker"))
        .and_then(|d| d.get("image"))
        .and_then(toml::Value::as_str)
        .filter(|s| !s.is_empty());
    if args.docker_image.is_none() {
        args.docker_image = docker_image.map(str::to_string);
    }
    for (slot, key) in [
        (&mut args.tls_ca_file, "tls-ca-file"),
        (&mut args.tls_cert_file, "tls-cert-file"),
        (&mut args.tls_key_file, "tls-key-file"),
    ] {
        if slot.is_none() {
            *slot = flags::template::string(template, key).map(Into::into);
        }
    }
}

/// Checks the flags' values (and, unattended, that nothing register would have to ask for is missing) without
/// contacting GitLab.
fn check_local_settings(
    args: &RegisterArgs,
    interactive: bool,
    template: Option<&toml::Table>,
) -> anyhow::Result<()> {
    let executor = args.executor.clone().unwrap_or_default();
    if let Some(level) = args
        .access_level
        .as_deref()
        .filter(|l| !["", "not_protected", "ref_protected"].contains(l))
    {
        bail!("--access-level `{level}` is not valid\nhint: use not_protected or ref_protected");
    }
    if !interactive {
        if executor.is_empty() {
            bail!("the executor is missing\nhint: pass --executor shell or --executor docker");
        }
        if ExecutorKind::parse(&executor).uses_docker_config() && args.docker_image.is_none() {
            bail!(
                "the default Docker image is missing\nhint: pass --docker-image (for example docker:latest)"
            );
        }
    }
    let overlay = Overlay::build(&args.upstream.0, &executor)?;
    let probe = RunnerConfig {
        executor,
        ..RunnerConfig::default()
    };
    overlay.apply(&probe, template)?;
    Ok(())
}

fn refuse_unsupported_executor(args: &RegisterArgs) -> anyhow::Result<()> {
    if let Some(e) = args
        .executor
        .as_deref()
        .filter(|e| !e.is_empty() && !executors::supported(&ExecutorKind::parse(e)))
    {
        bail!(
            "executor `{e}` is not supported by oxrunner yet (supported: {})\nhint: use --executor shell or --executor docker",
            executors::supported_names()
        );
    }
    Ok(())
}

fn resolve_url(args: &mut RegisterArgs, interactive: bool) -> anyhow::Result<String> {
    Ok(match args.url.take().filter(|u| !u.is_empty()) {
        Some(u) => u,
        None if interactive => prompt::ask_required(
            "Enter the GitLab instance URL (for example, https://gitlab.com/):",
            None,
        )?,
        None => bail!(
            "the GitLab URL is missing\nhint: pass --url https://gitlab.example.com/ (or set CI_SERVER_URL)"
        ),
    })
}

/// A `glrt-` authentication token: the runner already exists in GitLab and is only verified.
async fn verify(
    client: &oxrunner_api::Client,
    token: String,
    system_id: &str,
    info: &RunnerInfo,
) -> anyhow::Result<(Registered, Watch)> {
    let (verified, watch) = creating(client.verify_runner(&token, system_id, info)).await?;
    errln!(
        "Verifying runner... is valid                        runner={}",
        short(&token)
    );
    Ok((
        Registered {
            id: verified.id,
            token: if verified.token.is_empty() {
                token
            } else {
                verified.token
            },
            expires_at: verified.token_expires_at,
            via_registration_token: false,
        },
        watch,
    ))
}

/// A legacy registration token: the runner is created through `POST /runners` with the server-side settings.
async fn register_legacy(
    args: &mut RegisterArgs,
    interactive: bool,
    client: &oxrunner_api::Client,
    reg_token: String,
    info: RunnerInfo,
) -> anyhow::Result<(Registered, Watch)> {
    errln!(
        "WARNING: Support for registration tokens and runner parameters in the 'register' command has been deprecated by GitLab and will be replaced with runner authentication tokens."
    );
    let description = match args.name.clone() {
        Some(n) => n,
        None if interactive => prompt::ask("Enter a description for the runner:", Some(&hostname()))?,
        None => hostname(),
    };
    args.name = Some(description.clone());
    if args.tag_list.is_none() && interactive {
        args.tag_list = Some(prompt::ask("Enter tags for the runner (comma-separated):", None)?);
    }
    if args.maintenance_note.is_none() && interactive {
        args.maintenance_note = Some(prompt::ask(
            "Enter optional maintenance note for the runner:",
            None,
        )?);
    }
    let tag_list = args.tag_list.clone().unwrap_or_default();
    let req = RegisterRunnerRequest {
        description,
        maintenance_note: args.maintenance_note.clone().unwrap_or_default(),
        tag_list: tag_list.clone(),
        run_untagged: args.run_untagged.unwrap_or(tag_list.trim().is_empty()),
        locked: args.locked.unwrap_or(true),
        access_level: args.access_level.clone().unwrap_or_default(),
        maximum_timeout: args.maximum_timeout.unwrap_or(0).max(0),
        paused: args.paused.unwrap_or(false),
        info,
        token: reg_token.clone(),
    };
    let (resp, watch) = creating(client.register_runner(&req)).await?;
    errln!(
        "Registering runner... succeeded                     runner={}",
        short(&reg_token)
    );
    Ok((
        Registered {
            id: resp.id,
            token: resp.token,
            expires_at: resp.token_expires_at,
            via_registration_token: true,
        },
        watch,
    ))
}

/// The settings that only go into config.toml (name, executor, Docker image), asked for after registration as
/// gitlab-runner asks them.
fn resolve_local_settings(args: &mut RegisterArgs, interactive: bool) -> anyhow::Result<(String, String)> {
    let name = match args.name.clone() {
        Some(n) => n,
        None if interactive => prompt::ask(
            "Enter a name for the runner. This is stored only in the local config.toml file:",
            Some(&hostname()),
        )?,
        None => hostname(),
    };
    let executor = match args.executor.clone().filter(|e| !e.is_empty()) {
        Some(e) => e,
        None if interactive => loop {
            let e = prompt::ask_required(
                &format!("Enter an executor: {}:", executors::supported_names()),
                None,
            )?;
            if executors::supported(&ExecutorKind::parse(&e)) {
                break e;
            }
            errln!(
                "ERROR: executor `{e}` is not supported by oxrunner (choose one of {})",
                executors::supported_names()
            );
        },
        None => bail!("the executor is missing\nhint: pass --executor shell or --executor docker"),
    };
    let kind = ExecutorKind::parse(&executor);
    if kind.uses_docker_config() && args.docker_image.is_none() {
        if interactive {
            args.docker_image = Some(prompt::ask_required(
                "Enter the default Docker image (for example, ruby:2.7):",
                None,
            )?);
        } else {
            bail!(
                "the default Docker image is missing\nhint: pass --docker-image (for example docker:latest)"
            );
        }
    }
    if args.upstream.0.get("docker-helper-image").is_some() {
        errln!(
            "WARNING: --docker-helper-image is ignored: oxrunner moves sources, caches and artifacts itself and pulls no helper image"
        );
    }
    Ok((name, executor))
}

fn warn_limits_above_concurrent(doc: &ConfigDocument) {
    if let Ok(cfg) = doc.config() {
        for r in &cfg.runners {
            if r.limit > cfg.concurrent || r.request_concurrency > cfg.concurrent {
                errln!(
                    "WARNING: runner `{}` has limit/request_concurrency above the global concurrent = {}; it will never run more than {} jobs",
                    r.name,
                    cfg.concurrent,
                    cfg.concurrent
                );
            }
        }
    }
}

#[derive(Clone)]
struct Registered {
    id: i64,
    token: String,
    expires_at: Option<String>,
    via_registration_token: bool,
}

fn pick_token(
    args: &mut RegisterArgs,
    interactive: bool,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    if let Some(t) = args.token.clone().filter(|t| !t.is_empty()) {
        return Ok((Some(t), None));
    }
    let reg = match args.registration_token.clone().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None if interactive => prompt::ask_required("Enter the registration token:", None)?,
        None => bail!(
            "no runner token given\nhint: create a runner in GitLab (Settings > CI/CD > Runners > New runner) and pass its token with --token glrt-...; legacy registration tokens go in --registration-token"
        ),
    };
    if reg.starts_with("glrt-") {
        Ok((Some(reg), None))
    } else {
        Ok((None, Some(reg)))
    }
}

/// With an authentication token these attributes live on the server; gitlab-runner refuses them (or ignores them
/// with a warning when the token came in through --registration-token).
fn check_server_side_args_absent(args: &RegisterArgs, via_registration_flag: bool) -> anyhow::Result<()> {
    let mut given = Vec::new();
    if args.locked.is_some() {
        given.push("--locked");
    }
    if args.access_level.is_some() {
        given.push("--access-level");
    }
    if args.run_untagged.is_some() {
        given.push("--run-untagged");
    }
    if args.maximum_timeout.is_some() {
        given.push("--maximum-timeout");
    }
    if args.paused.is_some() {
        given.push("--paused");
    }
    if args.tag_list.is_some() {
        given.push("--tag-list");
    }
    if args.maintenance_note.is_some() {
        given.push("--maintenance-note");
    }
    if given.is_empty() {
        return Ok(());
    }
    if via_registration_flag {
        errln!(
            "WARNING: {} ignored: with a runner authentication token these are set on the runner in GitLab",
            given.join(", ")
        );
        Ok(())
    } else {
        bail!(
            "{} cannot be used with a runner authentication token\nhint: set them on the runner in the GitLab UI (Settings > CI/CD > Runners) and drop them here",
            given.join(", ")
        )
    }
}

fn build_runner(
    args: &RegisterArgs,
    name: &str,
    url: &str,
    executor: &str,
    reg: &Registered,
    overlay: &Overlay,
    template: Option<&toml::Table>,
) -> anyhow::Result<RunnerConfig> {
    let base = RunnerConfig {
        name: name.to_string(),
        url: url.to_string(),
        id: reg.id,
        token: reg.token.clone().into(),
        token_obtained_at: Some(now_utc_seconds()),
        token_expires_at: reg.expires_at.as_deref().and_then(parse_expiry),
        tls_ca_file: args.tls_ca_file.clone(),
        tls_cert_file: args.tls_cert_file.clone(),
        tls_key_file: args.tls_key_file.clone(),
        executor: executor.to_string(),
        shell: args.shell.clone(),
        ..RunnerConfig::default()
    };
    let mut overlay = overlay.clone();
    if let Some(image) = &args.docker_image
        && ExecutorKind::parse(executor).uses_docker_config()
    {
        overlay.set("docker.image", toml::Value::String(image.clone()));
    }
    let mut runner = overlay.apply(&base, template)?;
    // gitlab-runner keeps only the chosen executor's sections and never writes referees from register (docker,
    // kubernetes and custom, and the Docker `/cache` volume, are settled by `ConfigDocument::append_runner`).
    let kept = flags::executor_sections(executor);
    for (section, slot) in [
        ("ssh", &mut runner.ssh),
        ("parallels", &mut runner.parallels),
        ("virtualbox", &mut runner.virtualbox),
        ("machine", &mut runner.machine),
    ] {
        if !kept.contains(&section) {
            *slot = None;
        }
    }
    runner.referees = None;
    Ok(runner)
}

async fn rollback(client: &oxrunner_api::Client, reg: &Registered, system_id: &str) {
    let result = if reg.via_registration_token {
        client.unregister_runner(&reg.token).await
    } else {
        client.unregister_runner_manager(&reg.token, system_id).await
    };
    // With a registration token GitLab created the whole runner; with a `glrt-` token the runner was made in the
    // GitLab UI and only this machine's runner manager (its system id) was added, so only that is removed.
    let what = if reg.via_registration_token {
        format!("runner {}", reg.id)
    } else {
        format!("the runner manager {system_id} of runner {}", reg.id)
    };
    match result {
        Ok(()) => errln!(
            "Registration failed after GitLab created {what}: it was removed from GitLab again (pass --leave-runner to keep it)"
        ),
        Err(err) if reg.via_registration_token => errln!(
            "WARNING: registration failed after GitLab created {what}, and removing it again failed too: {err}\nhint: delete runner {} in GitLab (Settings > CI/CD > Runners)",
            reg.id
        ),
        Err(err) => errln!(
            "WARNING: registration failed after GitLab created {what}, and removing it again failed too: {err}\nhint: GitLab deletes a runner manager that has not contacted it for 7 days; the runner itself stays as created in the UI"
        ),
    }
}

fn api_error(err: ApiError) -> anyhow::Error {
    anyhow::Error::new(err)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "oxrunner".to_string())
}

/// gitlab-runner stores `token_obtained_at` in UTC truncated to seconds.
fn now_utc_seconds() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// GitLab sends Go's zero time (or nothing) for tokens that never expire.
fn parse_expiry(s: &str) -> Option<time::OffsetDateTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    (t.year() > 1).then_some(t)
}
