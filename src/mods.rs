//! Client-side mods (interim: none).
use crate::clientapp::Mod;
use crate::records::UserConfig;

pub fn build_mods(_config: &UserConfig) -> Result<Vec<Box<dyn Mod>>, String> {
    Ok(Vec::new())
}
