//! `zhengyun-operator tree`: the department tree with its tenants.

use kube::{Api, api::ListParams};

use crate::api;

/// Prints the tree.
pub async fn print() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let lp = ListParams::default();
    let departments = Api::<api::department::Department>::all(client.clone()).list(&lp).await?.items;
    let tenants = Api::<api::Tenant>::all(client).list(&lp).await?.items;
    print!(
        "{}",
        crate::departments::tree::render(&departments.iter().collect::<Vec<_>>(), &tenants.iter().collect::<Vec<_>>())
    );
    Ok(())
}
