//! `pinhole docs --out DIR`: man pages (clap_mangen) and shell completions
//! (clap_complete) made from the command-line definitions, for packages.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct DocsArgs {
    /// Where to write `man/*.1` and `completions/{pinhole.bash,_pinhole,pinhole.fish}`.
    #[arg(long)]
    pub out: PathBuf,
}

/// One page for `pinhole` and one per (nested) subcommand, named as man expects.
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path, count: &mut usize) -> Result<()> {
    let cmd = cmd.clone().name(name.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *count += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, &format!("{name}-{}", sub.get_name()), dir, count)?;
    }
    Ok(())
}

pub fn run(args: DocsArgs, cmd: clap::Command) -> Result<()> {
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut pages = 0;
    man_pages(&cmd, "pinhole", &man, &mut pages)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd.clone(), "pinhole", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
        tracing::debug!("wrote {}", path.display());
    }
    println!(
        "{pages} man pages in {}, bash, zsh and fish completions in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}
