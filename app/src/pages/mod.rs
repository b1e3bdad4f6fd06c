//! The dashboard's pages.

mod audit;
mod chap_fields;
mod chap_users;
mod connect_host;
mod group;
mod group_acl;
mod group_settings;
mod groups;
mod iscsi;
mod layout;
mod login;
mod nodes;
mod not_found;
mod overview;
mod reservations;
mod tokens;
mod users;
mod volumes;

pub use audit::AuditPage;
pub use chap_users::ChapUsersPage;
pub use group::GroupPage;
pub use groups::GroupsPage;
pub use iscsi::IscsiPage;
pub use layout::Layout;
pub use login::LoginPage;
pub use nodes::NodesPage;
pub use not_found::NotFound;
pub use overview::OverviewPage;
pub use tokens::TokensPage;
pub use users::UsersPage;
pub use volumes::VolumesPage;
