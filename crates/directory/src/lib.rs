//! LDAP and Active Directory user sources.
//!
//! An [`LdapSource`] finds users with the service account (or anonymously), checks passwords by
//! binding as the user, reads groups (AD `memberOf` with nested groups, or a group search
//! followed level by level) and the mapped attributes, and changes passwords (the Password
//! Modify extended operation, or AD's `unicodePwd`). [`SourceFactory`] builds every kind of user
//! source from its definition; the server wires it into the engine.
//!
//! May depend on: `tessera-core`.

mod ad;
mod dn;
mod factory;
mod password;
mod pool;
mod profile;
mod source;

pub use factory::SourceFactory;
pub use source::{LdapSource, TestReport};

use dn::*;
use password::*;
use profile::*;

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::model::{DirectoryType, GroupMode, LdapProfile};
    use tessera_core::source::PasswordChangeError;

    #[test]
    fn first_rdn_values() {
        assert_eq!(
            first_rdn_value("CN=VPN Admins,OU=Groups,DC=example,DC=org").as_deref(),
            Some("VPN Admins")
        );
        assert_eq!(
            first_rdn_value("cn=Smith\\, John,ou=people").as_deref(),
            Some("Smith, John")
        );
        assert_eq!(first_rdn_value("nonsense"), None);
    }

    #[test]
    fn ad_reasons_inside_invalid_credentials() {
        let text = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 773, v4563";
        assert_eq!(ad_data_code(text), Some("773"));
        assert_eq!(
            ad_data_code(
                "80090308: LdapErr: DSID-0C090569, comment: AcceptSecurityContext error, data 52e, v4f7c\0"
            ),
            Some("52e")
        );
        assert_eq!(ad_data_code("Invalid credentials"), None);
    }

    #[test]
    fn password_errors_read_as_a_user_understands() {
        assert_eq!(
            password_error(49, "", false),
            PasswordChangeError::WrongOldPassword
        );
        assert!(matches!(
            password_error(19, "0000052D: Constraint violation - check_password_restrictions", true),
            PasswordChangeError::PolicyViolation(m) if m.contains("too short")
        ));
        assert!(matches!(
            password_error(
                53,
                "0000001F: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM)",
                true
            ),
            PasswordChangeError::PolicyViolation(_)
        ));
        assert!(matches!(
            password_error(50, "", false),
            PasswordChangeError::Refused(_)
        ));
    }

    #[test]
    fn defaults_follow_the_directory_type() {
        let p: LdapProfile = serde_json::from_value(serde_json::json!({
            "directory": "active_directory",
            "servers": ["ldaps://dc1"],
            "base_dn": "DC=corp,DC=example"
        }))
        .unwrap();
        let r = Resolved::of(&p);
        assert_eq!(r.login_attributes, ["sAMAccountName", "userPrincipalName"]);
        assert_eq!(r.unique_id.as_deref(), Some("objectGUID"));
        assert_eq!(r.group_mode, GroupMode::MemberOf);
        assert!(
            r.user_attributes()
                .iter()
                .any(|a| a == "userAccountControl")
        );
        let mut p2 = p.clone();
        p2.directory = DirectoryType::Openldap;
        let r = Resolved::of(&p2);
        assert_eq!(r.login_attributes, ["uid"]);
        assert_eq!(r.unique_id.as_deref(), Some("entryUUID"));
        assert_eq!(r.group_mode, GroupMode::Search);
    }
}
