//! Permissions on a site and sets of them.

use std::fmt;

/// One permission on a site, named as in FormKiQ's defined sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
    Delete,
    Govern,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Write,
        Permission::Delete,
        Permission::Govern,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::Delete => "DELETE",
            Permission::Govern => "GOVERN",
            Permission::Admin => "ADMIN",
        }
    }

    /// Parses `READ`, `WRITE`, `DELETE`, `GOVERN` or `ADMIN` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// The permission an HTTP method needs: GET/HEAD READ, POST/PUT/PATCH WRITE, DELETE DELETE.
    /// Anything else (OPTIONS, TRACE, ...) needs READ; routing rejects what it does not serve.
    pub fn for_method(method: &str) -> Self {
        match method.to_ascii_uppercase().as_str() {
            "POST" | "PUT" | "PATCH" => Permission::Write,
            "DELETE" => Permission::Delete,
            _ => Permission::Read,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// This permission together with everything it implies: ADMIN implies all;
    /// GOVERN, WRITE and DELETE imply READ.
    fn closure(self) -> u8 {
        match self {
            Permission::Admin => 0b1_1111,
            Permission::Read => Permission::Read.bit(),
            p => p.bit() | Permission::Read.bit(),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions, closed under implication.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u8);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub fn of(perms: &[Permission]) -> Self {
        perms.iter().fold(PermissionSet::EMPTY, |s, p| s.with(*p))
    }

    /// READ WRITE DELETE: what a plain site group or a tenant claim grants.
    pub fn read_write_delete() -> Self {
        Self::of(&[Permission::Read, Permission::Write, Permission::Delete])
    }

    pub fn with(self, p: Permission) -> Self {
        PermissionSet(self.0 | p.closure())
    }

    pub fn union(self, other: PermissionSet) -> Self {
        PermissionSet(self.0 | other.0)
    }

    pub fn allows(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in the order READ WRITE DELETE GOVERN ADMIN.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.allows(*p))
    }

    /// Names as FormKiQ lists them (`["READ", "WRITE", ...]`).
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::as_str).collect()
    }

    /// `READ_WRITE` when the set allows writing, else `READ_ONLY` (FormKiQ's `permission` field).
    pub fn access_level(self) -> &'static str {
        if self.allows(Permission::Write) {
            "READ_WRITE"
        } else {
            "READ_ONLY"
        }
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no permission");
        }
        f.write_str(&self.names().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn implication_rules() {
        assert_eq!(
            PermissionSet::of(&[Admin]).names(),
            ["READ", "WRITE", "DELETE", "GOVERN", "ADMIN"]
        );
        assert_eq!(PermissionSet::of(&[Govern]).names(), ["READ", "GOVERN"]);
        assert_eq!(PermissionSet::of(&[Write]).names(), ["READ", "WRITE"]);
        assert_eq!(PermissionSet::of(&[Delete]).names(), ["READ", "DELETE"]);
        assert_eq!(PermissionSet::of(&[Read]).names(), ["READ"]);
        assert!(!PermissionSet::of(&[Write]).allows(Delete));
        assert!(!PermissionSet::of(&[Govern]).allows(Write));
        assert!(PermissionSet::EMPTY.is_empty());
    }

    #[test]
    fn method_mapping() {
        for (m, p) in [
            ("GET", Read),
            ("head", Read),
            ("POST", Write),
            ("PUT", Write),
            ("PATCH", Write),
            ("DELETE", Delete),
        ] {
            assert_eq!(Permission::for_method(m), p, "{m}");
        }
    }

    #[test]
    fn parse_and_levels() {
        assert_eq!(Permission::parse("govern"), Some(Govern));
        assert_eq!(Permission::parse("owner"), None);
        assert_eq!(PermissionSet::of(&[Read]).access_level(), "READ_ONLY");
        assert_eq!(
            PermissionSet::read_write_delete().access_level(),
            "READ_WRITE"
        );
    }
}
