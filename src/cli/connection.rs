//! From a SuperLink connection profile to gRPC clients.
//!
//! A profile with `options` and no `address` means the managed local
//! SuperLink (Flower 1.27's rule): it is started if needed (see `local`). A
//! profile with an address connects there, to any Flower 1.27 SuperLink. gRPC
//! failures become the messages Flower's CLI prints.
//!
//! It never starts processes itself (that is `local`).

use std::path::Path;

use tonic::transport::Channel;
use tonic::Code;

use crate::cli::flower_config::{self, Profile};
use crate::cli::transport::{channel, UNAVAILABLE};
use crate::cli::{local, CliError, Output};
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::wire as access;

/// Largest message the CLI accepts (run lists of many thousands of runs).
const MESSAGE_SIZE_MAX: usize = 256 * 1024 * 1024;

pub struct Connection {
    pub control: pb::control_client::ControlClient<Channel>,
    pub local: ext::local_client::LocalClient<Channel>,
    /// The profile, with its federation and options.
    pub profile: Profile,
    pub address: String,
    /// The Local API secret of the managed local SuperLink (`None` for a
    /// profile with an address: see [`Connection::local_secret`]).
    managed_secret: Option<std::path::PathBuf>,
}

impl Connection {
    /// The Local API secret of this SuperLink, if this user can read it: the
    /// managed SuperLink's is in `$FLWR_HOME/local-superlink/`; another
    /// floret SuperLink's is next to the state database it names
    /// (`Identify`), and is used only if it is this user's own private file.
    pub async fn local_secret(&mut self) -> Option<String> {
        let path = match &self.managed_secret {
            Some(path) => path.clone(),
            None => {
                let identity = self.local.identify(ext::IdentifyRequest {}).await.ok()?.into_inner();
                access::secret_path(Path::new(&identity.state_db))?
            }
        };
        tokio::task::spawn_blocking(move || access::read_secret(&path))
            .await
            .ok()
            .flatten()
    }
}

/// The Local API secret file of the managed local SuperLink of `flwr_home`.
pub(crate) fn managed_secret_file(flwr_home: &Path) -> std::path::PathBuf {
    local::directory(flwr_home).join(format!("{}.secret", local::DATABASE))
}

/// Loads the Flower configuration (creating it on first use, with Flower's
/// notice) and selects a profile.
pub(crate) fn load_profile(name: Option<&str>, out: &mut Output) -> Result<(Profile, std::path::PathBuf), CliError> {
    let flwr_home = crate::host::flwr_home();
    let (config, created) = flower_config::load_or_create(&flwr_home).map_err(|e| CliError::new(e.to_string()))?;
    if created {
        out.say(
            &flower_config::created_message(&config.path),
            crate::cli::table::Style::Plain,
        );
    }
    let profile = config.select_profile(name).map_err(|e| CliError::new(e.to_string()))?;
    Ok((profile, flwr_home))
}

/// Connects to the profile's SuperLink, starting the managed one if needed.
pub async fn connect(profile: Profile, flwr_home: &Path, out: &mut Output) -> Result<Connection, CliError> {
    let managed = profile.is_managed_local();
    let address = if managed {
        local::ensure_running(flwr_home, out).await?.control_address
    } else {
        let address = profile.address.clone().ok_or_else(|| {
            CliError::new(format!(
                "SuperLink connection '{}' has no address and no options.",
                profile.name
            ))
        })?;
        if !profile.insecure {
            return Err(CliError::new(format!(
                "SuperLink connection '{}' uses TLS, which this flwr does not support yet; set `insecure = true` \
                 for a SuperLink that listens without TLS.",
                profile.name
            )));
        }
        address
    };
    let channel = channel(&address).await?;
    Ok(Connection {
        control: pb::control_client::ControlClient::new(channel.clone())
            .max_decoding_message_size(MESSAGE_SIZE_MAX)
            .max_encoding_message_size(MESSAGE_SIZE_MAX),
        local: ext::local_client::LocalClient::new(channel).max_decoding_message_size(MESSAGE_SIZE_MAX),
        profile,
        address,
        managed_secret: managed.then(|| managed_secret_file(flwr_home)),
    })
}

/// The CLI's message for a failed call, as Flower words them.
pub(crate) fn status_message(status: &tonic::Status) -> String {
    match status.code() {
        Code::Unavailable => UNAVAILABLE.to_string(),
        Code::NotFound if status.message().starts_with("Run ID not found") => "Run ID not found.".to_string(),
        Code::Unimplemented => {
            format!("The SuperLink does not implement this call ({}).", status.message())
        }
        _ => status.message().to_string(),
    }
}

/// A gRPC status as a CLI error.
pub(crate) fn status_error(status: tonic::Status) -> CliError {
    CliError::new(status_message(&status))
}
