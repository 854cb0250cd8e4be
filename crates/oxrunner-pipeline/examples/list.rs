//! `cargo run --release --example list -- <repo dir>`: what `oxrunner exec --list` prints.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let start = std::time::Instant::now();
    let ctx = oxrunner_pipeline::PipelineContext::from_git(std::path::Path::new(&dir))?;
    let git_done = start.elapsed();
    let p = oxrunner_pipeline::resolve(&ctx)?;
    let took = start.elapsed();
    eprintln!("git context: {git_done:?}, resolve: {:?}", took - git_done);
    print!("{}", oxrunner_pipeline::render_list(&p));
    for w in &p.warnings {
        eprintln!("{w}");
    }
    eprintln!("resolved {} jobs in {took:?}", p.jobs.len());
    Ok(())
}
