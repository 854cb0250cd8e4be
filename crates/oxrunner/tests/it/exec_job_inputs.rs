//! Issue #15 for `oxrunner exec`: a job's `inputs:` defaults are interpolated into `${{ job.inputs.* }}` as the
//! daemon does for GitLab's jobs, bad definitions are refused with their location, and an expression that does
//! not evaluate fails only its job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::exec::Repo;

const CI: &str = r#"
deploy:
  inputs:
    target_env:
      default: staging
      options: [staging, production]
    replicas:
      type: number
      default: 3
    debug_mode:
      type: boolean
      default: false
    tags:
      type: array
      default: [smoke, regression]
  script:
    - 'echo "env=${{ job.inputs.target_env }} replicas=${{ job.inputs.replicas }} debug=${{ job.inputs.debug_mode }}"'
    - "echo 'tags=${{ job.inputs.tags }} flag=${{ job.inputs.debug_mode && \"-x\" || \"none\" }}'"
broken:
  inputs:
    name:
      default: x
  script:
    - echo ran-broken ${{ job.inputs.other }}
plain:
  script:
    - echo 'kept=${{ job.inputs.nothing }}'
"#;

#[test]
fn defaults_are_interpolated_and_a_bad_expression_fails_its_job() {
    let repo = Repo::new(CI, &[]);
    let run = repo.exec(&[]);
    assert!(!run.ok(), "{}", run.dump());
    assert!(
        run.printed("deploy", "env=staging replicas=3 debug=false"),
        "{}",
        run.dump()
    );
    assert!(
        run.printed("deploy", r#"tags=["smoke","regression"] flag=none"#),
        "{}",
        run.dump()
    );
    assert!(
        run.printed("plain", "kept=${{ job.inputs.nothing }}"),
        "{}",
        run.dump()
    );
    assert!(run.summary("deploy").contains("passed"), "{}", run.dump());
    assert!(
        run.summary("broken")
            .contains("FAILED (runner_configuration_error)"),
        "{}",
        run.dump()
    );
    let out = run.stdout();
    assert!(
        out.contains("failed to interpolate job inputs: steps[0] (script).script[0]: `${{ job.inputs.other }}`: attribute `other` not found"),
        "{}",
        run.dump()
    );
    assert!(
        run.printed("broken", "hint: check the `${{ }}` expressions of the job's script, image, services, artifacts and cache against its inputs (read them as `job.inputs.<name>`); write `\\${{` for a literal `${{`, or set FF_ENABLE_JOB_INPUTS_INTERPOLATION=false to leave them as they are"),
        "{}",
        run.dump()
    );
    assert!(!out.contains("ran-broken"), "{}", run.dump());
}

#[test]
fn a_bad_definition_is_refused_with_its_location() {
    for (inputs, what) in [
        (
            "    n:\n      type: number\n",
            "jobs:j:inputs:n input must have a default value",
        ),
        (
            "    n:\n      type: number\n      default: three\n",
            "jobs:j:inputs:n default value is not a number",
        ),
        (
            "    n:\n      default: c\n      options: [a, b]\n",
            "jobs:j:inputs:n `c` cannot be used because it is not in the list of allowed options",
        ),
        (
            "    n:\n      default: abc\n      regex: ^[0-9]+$\n",
            "jobs:j:inputs:n `abc` does not match required RegEx pattern `^[0-9]+$`",
        ),
        (
            "    n:\n      default: a\n      typo: 1\n",
            "jobs:j:inputs:n config contains unknown keys: typo",
        ),
        (
            "    n:\n      type: struct\n      default: a\n",
            "unknown input type `struct`",
        ),
    ] {
        let ci = format!("j:\n  inputs:\n{inputs}  script:\n    - echo ran\n");
        let repo = Repo::new(&ci, &[]);
        let run = repo.exec(&[]);
        assert!(!run.ok(), "{}", run.dump());
        assert!(run.stderr().contains(what), "{what}:\n{}", run.dump());
        assert!(run.stderr().contains("hint: "), "no hint:\n{}", run.dump());
        assert!(
            run.stderr().contains(".gitlab-ci.yml:"),
            "no location:\n{}",
            run.dump()
        );
    }
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn an_image_that_interpolates_to_nothing_runs_in_the_shell() {
    if !crate::support::docker::docker_available() {
        return;
    }
    // The raw payload names an image; the interpolated one does not, and that is the one that runs.
    let ci = "j:\n  inputs:\n    img:\n      default: ''\n  image: '${{ job.inputs.img }}'\n  script:\n    - echo ran-in-shell\n";
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.printed("j", "ran-in-shell"), "{}", run.dump());
}
