//! Every flag of the command line has help text and a line in the README, so `--help` and the
//! documentation never fall behind the code.

use clap::CommandFactory as _;

#[test]
fn every_flag_has_help_and_a_line_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let cli = baton::cli::Cli::command();
    let mut missing = Vec::new();
    let commands = std::iter::once(&cli).chain(cli.get_subcommands());
    for cmd in commands {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let name = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => format!("<{}>", id.to_uppercase()),
            };
            if arg.get_help().is_none() {
                missing.push(format!("{} {name}: no help text", cmd.get_name()));
            }
            if arg.get_long().is_some() && !readme.contains(&name) {
                missing.push(format!("{} {name}: not in README.md", cmd.get_name()));
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !readme.contains(&*env) {
                    missing.push(format!("{} {name}: its variable {env} is not in README.md", cmd.get_name()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The README's table of failure codes is the contract in `protocol::codes`, row by row.
#[test]
fn the_readme_lists_every_failure_code_with_its_kind() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for (code, retryable) in baton::protocol::codes::ALL {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{code}` |")))
            .unwrap_or_else(|| panic!("README.md has no row for {code}"));
        let kind = if *retryable { "| retryable |" } else { "| permanent |" };
        assert!(row.ends_with(kind), "README.md says {row:?}; {code} is {kind}");
    }
}
