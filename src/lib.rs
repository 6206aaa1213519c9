//! floret: Flower's managed local SuperLink in Rust, event-sourced and
//! replayable. See `docs/ARCHITECTURE.md` for the map.
pub mod domain;
pub mod records;
pub mod store;
pub mod sim {
    pub mod prng;
}
pub mod proto {
    pub mod flwr {
        pub mod proto {
            tonic::include_proto!("flwr.proto");
        }
    }
    pub mod floret {
        pub mod v1 {
            tonic::include_proto!("floret.v1");
        }
    }
}
