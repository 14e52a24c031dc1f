//! `--user` / the image's `User`, resolved through the image's own `/etc/passwd` and
//! `/etc/group`, with the rules of runc's `user.GetExecUser` (which docker uses):
//! - `""` is root; `NAME` must exist in passwd; a numeric `UID` need not (gid 0, HOME `/`);
//! - `USER:GROUP` takes the group by name (must exist) or number;
//! - without an explicit group, the groups that list the user as a member are supplementary.

use super::SpecError;

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = l.split(':').collect();
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

/// The gid of `g`: a number, or a group name in the image's `/etc/group` text.
pub(crate) fn group_id(g: &str, group: Option<&str>) -> Option<u32> {
    numeric(g).or_else(|| {
        group_entries(group.unwrap_or(""))
            .find(|e| e.name == g)
            .map(|e| e.gid)
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = l.split(':').collect();
        Some(GroupEntry {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves `spec` (`""`, `NAME`, `UID`, `NAME:GROUP`, `UID:GID`, ...) as `docker run` does.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, SpecError> {
    resolve_user_as(spec, passwd, group, true)
}

/// [`resolve_user`], with the primary group among the supplementary ones (`docker run`) or not
/// (BuildKit's RUN: only what `/etc/group` names).
pub fn resolve_user_as(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
    primary_in_groups: bool,
) -> Result<ExecUser, SpecError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let passwd = passwd.unwrap_or("");
    let found = match numeric(user_arg) {
        Some(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        None => passwd_entries(passwd).find(|e| e.name == user_arg),
    };
    let mut user = match (&found, numeric(user_arg)) {
        (Some(e), _) => ExecUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: Vec::new(),
            home: if e.home.is_empty() { "/" } else { e.home }.to_owned(),
        },
        (None, Some(uid)) => ExecUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".to_owned(),
        },
        (None, None) => return Err(SpecError::UnknownUser(user_arg.to_owned())),
    };
    let groups = group.unwrap_or("");
    match group_arg.filter(|g| !g.is_empty()) {
        Some(g) => {
            user.gid = match numeric(g) {
                Some(gid) => gid,
                None => group_entries(groups)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| SpecError::UnknownGroup(g.to_owned()))?,
            };
        }
        None => {
            if let Some(e) = &found {
                for g in group_entries(groups) {
                    if g.members.contains(&e.name)
                        && g.gid != user.gid
                        && !user.additional_gids.contains(&g.gid)
                    {
                        user.additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    // docker (runc's GetExecUser): the supplementary groups always hold the primary group
    // (`id` in `-u 1000` says `groups=0(root)`, in `-u root:nogroup` `groups=65534(nogroup)`).
    if primary_in_groups && !user.additional_gids.contains(&user.gid) {
        user.additional_gids.insert(0, user.gid);
    }
    Ok(user)
}
