//! `waymark completions` and `waymark man`: what installing waymark
//! without Rust needs beside the binary, made from the same clap command
//! as `--help`, so the three never disagree.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

/// The completion script of `shell`, on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "waymark", &mut std::io::stdout());
}

/// The manual page on stdout, or with `out` every page in that folder;
/// returns the files written.
pub(crate) fn man(out: Option<&Path>) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut command = Cli::command();
    // Global options are shown on every command's page, as in --help.
    command.build();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::io::stdout().write_all(&page)?;
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(&command, "waymark", dir, &mut written)?;
    Ok(written)
}

/// `command`'s page as `name.1`, then each subcommand's as
/// `name-<sub>.1` (`waymark-backup-create.1`), as git names its pages.
fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone().name(name.to_owned())).render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("could not write {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
