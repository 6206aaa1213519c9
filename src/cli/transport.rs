//! The gRPC channel from the CLI to a SuperLink address, and Flower's
//! words for an address where nothing answers.
//!
//! It never selects a profile and never starts a SuperLink (`connection`
//! and `local` do, both through this).

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::cli::CliError;

/// Flower's message when nothing answers at the address.
pub(crate) const UNAVAILABLE: &str =
    "Connection to the SuperLink is unavailable. Please check your network connection \
    and 'address' in the SuperLink connection configuration.";

/// A channel to `address` (`host:port`, insecure), or Flower's errors.
pub async fn channel(address: &str) -> Result<Channel, CliError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| CliError::new(format!("Invalid SuperLink address '{address}'; expected host:port.")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    endpoint.connect().await.map_err(|_| CliError::new(UNAVAILABLE))
}
