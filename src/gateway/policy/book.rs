//! The rules in force: the servers file's rules compiled, per level, replaced whole by a
//! reload (open sessions are judged by the new ones from their next request).
//!
//! Owns: which rules are in force. Must not touch: where they apply.

use parking_lot::RwLock;
use std::{collections::HashMap, sync::Arc};

use super::RuleSet;
use crate::config::{DeniedAs, PolicyConfig};

/// The rules in force, replaced whole by a reload.
pub struct Book {
    current: RwLock<Arc<Compiled>>,
}

pub struct Compiled {
    pub gateway: RuleSet,
    pub servers: HashMap<String, RuleSet>,
    pub denied: DeniedAs,
    pub headers: Vec<String>,
}

impl Book {
    pub fn new(config: &PolicyConfig) -> Result<Book, String> {
        Ok(Book {
            current: RwLock::new(Arc::new(compiled(config)?)),
        })
    }

    /// Puts the file's new rules in force (all or nothing).
    pub fn replace(&self, config: &PolicyConfig) -> Result<(), String> {
        let fresh = compiled(config)?;
        *self.current.write() = Arc::new(fresh);
        Ok(())
    }

    pub fn current(&self) -> Arc<Compiled> {
        self.current.read().clone()
    }
}

fn compiled(config: &PolicyConfig) -> Result<Compiled, String> {
    let mut servers = HashMap::new();
    for (name, rules) in &config.servers {
        servers.insert(name.clone(), RuleSet::compile(rules)?);
    }
    Ok(Compiled {
        gateway: RuleSet::compile(&config.gateway)?,
        servers,
        denied: config.denied,
        headers: config.headers.clone(),
    })
}
