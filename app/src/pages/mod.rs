//! The dashboard's pages.

mod audit;
mod chap_users;
mod group;
mod groups;
mod nodes;
mod volumes;
mod layout;
mod login;
mod not_found;
mod overview;
mod tokens;
mod users;

pub use audit::AuditPage;
pub use chap_users::ChapUsersPage;
pub use group::GroupPage;
pub use groups::GroupsPage;
pub use nodes::NodesPage;
pub use volumes::VolumesPage;
pub use layout::Layout;
pub use login::LoginPage;
pub use not_found::NotFound;
pub use overview::OverviewPage;
pub use tokens::TokensPage;
pub use users::UsersPage;
