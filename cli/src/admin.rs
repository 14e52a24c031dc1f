//! `hoist admin --registry HOST[:PORT] ...`: a private registry's users, organisations, teams,
//! grants, repository visibility, robots, personal access tokens and audit log, through its admin
//! API, with the credentials `hoist login HOST` stored.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hoist_client::admin::{Action, AdminClient, AdminError, Visibility};
use hoist_client::credentials::DockerConfig;

use crate::home;
use crate::transfer::{NetArgs, endpoints};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Administer a hoist registry: users, organisations, teams, tokens (uses `hoist login`'s
    /// credentials)
    Admin(AdminArgs),
}

#[derive(Args)]
pub struct AdminArgs {
    /// The registry (HOST or HOST:PORT); defaults to `hoist serve`'s embedded address
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "HOIST_REGISTRY",
        default_value = "127.0.0.1:5000"
    )]
    registry: String,
    #[command(flatten)]
    net: NetArgs,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Users
    #[command(subcommand)]
    User(UserCmd),
    /// Organisations
    #[command(subcommand)]
    Org(OrgCmd),
    /// Teams of an organisation and what they may do
    #[command(subcommand)]
    Team(TeamCmd),
    /// Repositories
    #[command(subcommand)]
    Repo(RepoCmd),
    /// Your personal access tokens
    #[command(subcommand)]
    Token(TokenCmd),
    /// Robot accounts of an organisation
    #[command(subcommand)]
    Robot(RobotCmd),
    /// Grant a team actions on repositories: `grant acme/dev push 'acme/*'` (the same as
    /// `team grant acme dev 'acme/*' push`)
    Grant {
        /// ORG/TEAM
        team: String,
        /// Comma-separated: pull, push, delete, admin
        actions: String,
        /// Repository pattern in the organisation; `*` matches any characters
        pattern: String,
    },
    /// Show the latest security events
    Audit {
        /// How many events, newest last
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user
    Add {
        name: String,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user
    Rm { name: String },
    /// Change a user's password (yours, or anyone's as an admin)
    Passwd {
        name: String,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users
    Ls,
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Create an organisation
    Create { org: String },
}

#[derive(Subcommand)]
enum TeamCmd {
    /// Create a team in an organisation
    Create { org: String, team: String },
    /// Create a team with its first members: `team add acme dev --member alice`
    Add {
        org: String,
        team: String,
        /// A user to add to the team; repeatable
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
    },
    /// Add a user to a team
    AddMember {
        org: String,
        team: String,
        user: String,
    },
    /// Remove a user from a team
    RmMember {
        org: String,
        team: String,
        user: String,
    },
    /// Grant a team actions on repositories (`'acme/*' pull,push`)
    Grant {
        org: String,
        team: String,
        /// Repository pattern in the organisation; `*` matches any characters
        pattern: String,
        /// Comma-separated: pull, push, delete, admin
        actions: String,
    },
}

#[derive(Subcommand)]
enum RepoCmd {
    /// Make a repository public (anonymous pull) or private
    Visibility {
        repo: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a personal access token for yourself; prints it once, on standard output
    Create {
        name: String,
        /// `repository:PATTERN:ACTIONS`; repeatable, at least one (the token can do no more
        /// than its scopes and than you)
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime: seconds, or a number with s, m, h or d
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List your personal access tokens
    Ls,
    /// Revoke a personal access token by id
    Revoke { id: String },
}

#[derive(Subcommand)]
enum RobotCmd {
    /// Create robot ORG+NAME; prints its token once, on standard output
    Create {
        org: String,
        name: String,
        /// `repository:PATTERN:ACTIONS`; repeatable
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime: seconds, or a number with s, m, h or d
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
}

/// `90`, `90s`, `15m`, `12h`, `30d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: want a number with s, m, h or d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("invalid duration unit in {s:?}: want s, m, h or d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

pub fn run(cmd: AdminCommand) -> Result<()> {
    let AdminCommand::Admin(args) = cmd;
    home::runtime()?.block_on(admin(args))
}

fn read_password(password_stdin: bool, name: &str) -> Result<String> {
    let password = if password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("standard input is not a terminal: use --password-stdin");
    };
    if password.is_empty() {
        bail!("the password for {name} is empty");
    }
    Ok(password)
}

/// One clear line for a refusal.
fn explain(e: AdminError, host: &str, what: &str) -> anyhow::Error {
    match e {
        AdminError::Unauthorized { message, .. } => anyhow!(
            "{what}: unauthorized: {message} (run `hoist login {host}` with an admin's credentials)"
        ),
        AdminError::Denied { message, .. } => anyhow!("{what}: denied: {message}"),
        AdminError::NotFound { message, .. } => anyhow!("{what}: not found: {message}"),
        AdminError::Api {
            status,
            code,
            message,
            ..
        } => match code {
            Some(code) => anyhow!("{what}: {code} ({status}): {message}"),
            None => anyhow!("{what}: {status}: {message}"),
        },
        AdminError::Connection { source, .. } => {
            anyhow!(
                "{what}: cannot reach registry {host}: {}",
                hoist_engine::error::error_chain(&source)
            )
        }
        e => anyhow::Error::new(e).context(what.to_owned()),
    }
}

async fn admin(args: AdminArgs) -> Result<()> {
    let host = args.registry.trim_end_matches('/').to_ascii_lowercase();
    let home = home::hoist_home()?;
    let endpoints = endpoints(&args.net, &home)?;
    let config = DockerConfig::from_env().context("reading the docker config")?;
    let client = AdminClient::connect(&host, &endpoints, &config)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    let h = host.as_str();
    match args.what {
        What::User(UserCmd::Add {
            name,
            password_stdin,
        }) => {
            let password = read_password(password_stdin, &name)?;
            let what = format!("adding user {name}");
            client
                .add_user(&name, &password)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("Created user {name}");
        }
        What::User(UserCmd::Rm { name }) => {
            let what = format!("removing user {name}");
            client
                .remove_user(&name)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("Removed user {name}");
        }
        What::User(UserCmd::Passwd {
            name,
            password_stdin,
        }) => {
            let password = read_password(password_stdin, &name)?;
            let what = format!("changing the password of {name}");
            client
                .set_password(&name, &password)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("Changed the password of {name}");
        }
        What::User(UserCmd::Ls) => {
            let users = client
                .users()
                .await
                .map_err(|e| explain(e, h, "listing users"))?;
            println!("{:<32} ADMIN", "NAME");
            for u in users {
                println!("{:<32} {}", u.name, if u.admin { "yes" } else { "no" });
            }
        }
        What::Org(OrgCmd::Create { org }) => {
            let what = format!("creating organisation {org}");
            client
                .create_org(&org)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("Created organisation {org}");
        }
        What::Team(TeamCmd::Create { org, team }) => create_team(&client, h, &org, &team).await?,
        What::Team(TeamCmd::Add { org, team, members }) => {
            create_team(&client, h, &org, &team).await?;
            for user in members {
                add_member(&client, h, &org, &team, &user).await?;
            }
        }
        What::Grant {
            team: org_team,
            actions,
            pattern,
        } => {
            let Some((org, team)) = org_team
                .split_once('/')
                .filter(|(o, t)| !o.is_empty() && !t.is_empty() && !t.contains('/'))
            else {
                bail!("invalid team {org_team:?}: want ORG/TEAM, e.g. acme/dev");
            };
            grant(&client, h, org, team, &pattern, &actions).await?;
        }
        What::Team(TeamCmd::AddMember { org, team, user }) => {
            add_member(&client, h, &org, &team, &user).await?;
        }
        What::Team(TeamCmd::RmMember { org, team, user }) => {
            let what = format!("removing {user} from team {org}/{team}");
            client
                .remove_member(&org, &team, &user)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("Removed {user} from team {org}/{team}");
        }
        What::Team(TeamCmd::Grant {
            org,
            team,
            pattern,
            actions,
        }) => grant(&client, h, &org, &team, &pattern, &actions).await?,
        What::Repo(RepoCmd::Visibility { repo, visibility }) => {
            let v: Visibility = visibility.parse()?;
            let what = format!("making {repo} {v}");
            client
                .set_visibility(&repo, v)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("{repo} is now {v}");
        }
        What::Token(TokenCmd::Create {
            name,
            scopes,
            expires_in,
        }) => {
            let what = format!("creating token {name}");
            let created = client
                .create_token(&name, &scopes, expires_in)
                .await
                .map_err(|e| explain(e, h, &what))?;
            eprintln!(
                "Created token {name} (id {}); it is shown only now",
                created.id
            );
            println!("{}", created.token);
        }
        What::Token(TokenCmd::Ls) => {
            let tokens = client
                .tokens()
                .await
                .map_err(|e| explain(e, h, "listing tokens"))?;
            println!("{:<36} {:<20} {:<24} SCOPES", "ID", "NAME", "EXPIRES");
            for t in tokens {
                let expires = t
                    .expires_at
                    .map_or_else(|| "never".to_owned(), |e| e.to_string());
                println!(
                    "{:<36} {:<20} {:<24} {}",
                    t.id,
                    t.name,
                    expires,
                    t.scopes.join(" ")
                );
            }
        }
        What::Token(TokenCmd::Revoke { id }) => {
            let what = format!("revoking token {id}");
            client
                .revoke_token(&id)
                .await
                .map_err(|e| explain(e, h, &what))?;
            println!("Revoked token {id}");
        }
        What::Robot(RobotCmd::Create {
            org,
            name,
            scopes,
            expires_in,
        }) => {
            let what = format!("creating robot {org}+{name}");
            let robot = client
                .create_robot(&org, &name, &scopes, expires_in)
                .await
                .map_err(|e| explain(e, h, &what))?;
            eprintln!(
                "Created robot {}; its token is shown only now (use it as the password of `hoist login -u {}`)",
                robot.name, robot.name
            );
            println!("{}", robot.token);
        }
        What::Audit { limit } => {
            let events = client
                .audit(Some(limit))
                .await
                .map_err(|e| explain(e, h, "reading the audit log"))?;
            for e in events {
                println!(
                    "{} {} {} {} {} {}",
                    e.time,
                    e.actor.as_deref().unwrap_or("-"),
                    e.action,
                    e.target.as_deref().unwrap_or("-"),
                    e.outcome,
                    e.remote.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    Ok(())
}

async fn create_team(client: &AdminClient, h: &str, org: &str, team: &str) -> Result<()> {
    let what = format!("creating team {org}/{team}");
    client
        .create_team(org, team)
        .await
        .map_err(|e| explain(e, h, &what))?;
    println!("Created team {org}/{team}");
    Ok(())
}

async fn add_member(
    client: &AdminClient,
    h: &str,
    org: &str,
    team: &str,
    user: &str,
) -> Result<()> {
    let what = format!("adding {user} to team {org}/{team}");
    client
        .add_member(org, team, user)
        .await
        .map_err(|e| explain(e, h, &what))?;
    println!("Added {user} to team {org}/{team}");
    Ok(())
}

async fn grant(
    client: &AdminClient,
    h: &str,
    org: &str,
    team: &str,
    pattern: &str,
    actions: &str,
) -> Result<()> {
    let list = Action::parse_list(actions)?;
    let what = format!("granting {actions} on {pattern} to team {org}/{team}");
    client
        .grant(org, team, pattern, &list)
        .await
        .map_err(|e| explain(e, h, &what))?;
    let names: Vec<&str> = list.iter().map(|a| a.as_str()).collect();
    println!(
        "Granted {} on {pattern} to team {org}/{team}",
        names.join(",")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert!(parse_duration("1w").unwrap_err().contains("\"1w\""));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
