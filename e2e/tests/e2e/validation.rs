//! Bad input is refused by the API server itself, with a message that names the field.

use kube::{Api, api::PostParams};
use zhengyun::api::{Amount, Owner, OwnerKind, Tenant, TenantNamespace, amount::Count};
use zhengyun_e2e::{apply_tenant, client, tenant};

async fn refused(api: &Api<Tenant>, t: &Tenant) -> String {
    match api.create(&PostParams::default(), t).await {
        Ok(_) => panic!("the API server accepted an invalid tenant: {:?}", t.spec),
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "refused as invalid, not for another reason: {}", s.message);
            s.message.clone()
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn a_cloud_admin_gets_a_clear_error_for_each_bad_field() {
    let client = client().await;
    let api: Api<Tenant> = Api::all(client.clone());
    type Mutate = fn(&mut Tenant);
    let cases: Vec<(&str, Mutate, &[&str])> = vec![
        ("unknown security level", |t| t.spec.security_level = 5, &["spec.securityLevel", "Unsupported value"]),
        (
            "suffix that is not a DNS label",
            |t| t.spec.namespaces[0].suffix = "Bad_Suffix".into(),
            &["spec.namespaces[0].suffix"],
        ),
        (
            "suffix too long once prefixed",
            |t| t.spec.namespaces[0].suffix = "x".repeat(55),
            &["spec.namespaces", "must be at most 63 characters"],
        ),
        (
            "duplicate suffix",
            |t| t.spec.namespaces.push(TenantNamespace { suffix: "apps".into() }),
            &["spec.namespaces[1]", "Duplicate value"],
        ),
        (
            "negative quantity",
            |t| t.spec.quota.cpu = Some(Amount("-1".into())),
            &["spec.quota.cpu", "non-negative quantity"],
        ),
        (
            "malformed quantity",
            |t| t.spec.quota.memory = Some(Amount("lots".into())),
            &["spec.quota.memory", "quantity"],
        ),
        ("fractional count", |t| t.spec.quota.pods = Some(Count(Amount("1.5".into()))), &["spec.quota.pods", "whole"]),
        ("no owners", |t| t.spec.owners.clear(), &["spec.owners"]),
        ("zone that is not a DNS label", |t| t.spec.zone = "Intra Net".into(), &["spec.zone"]),
        (
            "tenant name that is not a DNS label",
            |t| t.metadata.name = Some("bad.name".into()),
            &["metadata.name must be a lowercase DNS label"],
        ),
        ("department code with spaces", |t| t.spec.department.code = "A B".into(), &["spec.department.code"]),
        (
            "every authenticated user as owner",
            |t| t.spec.owners = vec![Owner { kind: OwnerKind::Group, name: "system:authenticated".into() }],
            &["spec.owners[0].name", "holds users of the whole cluster"],
        ),
        (
            "anonymous as owner",
            |t| t.spec.owners = vec![Owner { kind: OwnerKind::User, name: "system:anonymous".into() }],
            &["spec.owners[0].name", "system:anonymous"],
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut t = tenant("validation", &["apps"]);
        mutate(&mut t);
        let message = refused(&api, &t).await;
        for e in expected {
            assert!(message.contains(e), "{what}: expected {e:?} in the API server's message: {message}");
        }
        println!("{what}: {message}");
    }
}

#[tokio::test]
async fn the_department_of_a_tenant_cannot_change() {
    let client = client().await;
    let t = tenant("immutable", &["apps"]);
    apply_tenant(&client, &t).await;
    let api: Api<Tenant> = Api::all(client.clone());
    let mut current = api.get("immutable").await.expect("tenant exists");
    current.spec.department.code = "ANOTHER".into();
    match api.replace("immutable", &PostParams::default(), &current).await {
        Ok(_) => panic!("department code changed"),
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("spec.department.code is immutable"), "{}", s.message);
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    // Other fields stay editable.
    current.spec.department.code = t.spec.department.code.clone();
    current.spec.department.name_zh = Some("新名称".into());
    api.replace("immutable", &PostParams::default(), &current).await.expect("renaming the department is allowed");
}
