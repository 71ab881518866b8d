//! Two Rust types under one OpenAPI schema name make the document lie:
//! utoipa keys components by name, so one type's schema silently stands in
//! for the other's wherever either is used (the record entries once
//! published the attendance entry's schema). utoipa cannot tell which Rust
//! type a component came from, so this test reads the source instead: every
//! `ToSchema` type, the name it publishes (`#[schema(as = …)]` or its own),
//! and then that the document has no component the reading missed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// Every `#[derive(ToSchema)]` type under `dir`: schema name → where each is defined.
fn schema_types(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut found = BTreeMap::new();
    let mut files = vec![];
    rust_files(dir, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        let mut visitor = SchemaTypes { file: &file, found: &mut found };
        visitor.visit_file(&ast);
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

struct SchemaTypes<'a> {
    file: &'a Path,
    found: &'a mut BTreeMap<String, Vec<String>>,
}

impl SchemaTypes<'_> {
    fn item(&mut self, attrs: &[syn::Attribute], ident: &syn::Ident) {
        if !attrs.iter().any(derives_to_schema) {
            return;
        }
        let name = attrs.iter().find_map(schema_as).unwrap_or_else(|| ident.to_string());
        self.found.entry(name).or_default().push(format!("{} ({})", ident, self.file.display()));
    }
}

impl<'ast> Visit<'ast> for SchemaTypes<'_> {
    fn visit_item_struct(&mut self, s: &'ast syn::ItemStruct) {
        self.item(&s.attrs, &s.ident);
    }
    fn visit_item_enum(&mut self, e: &'ast syn::ItemEnum) {
        self.item(&e.attrs, &e.ident);
    }
}

fn derives_to_schema(attr: &syn::Attribute) -> bool {
    if !attr.path().is_ident("derive") {
        return false;
    }
    let mut yes = false;
    let _ = attr.parse_nested_meta(|meta| {
        yes |= meta.path.segments.last().is_some_and(|s| s.ident == "ToSchema");
        Ok(())
    });
    yes
}

/// The name `#[schema(as = a::b::C)]` publishes: utoipa joins the path with dots.
fn schema_as(attr: &syn::Attribute) -> Option<String> {
    let list = attr.meta.require_list().ok().filter(|l| l.path.is_ident("schema"))?;
    let tokens: Vec<proc_macro2::TokenTree> = list.tokens.clone().into_iter().collect();
    // The list's top-level `key = value` items, split at commas outside groups.
    tokens.split(|t| matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',')).find_map(|item| match item {
        [proc_macro2::TokenTree::Ident(key), proc_macro2::TokenTree::Punct(eq), value @ ..]
            if key == "as" && eq.as_char() == '=' =>
        {
            let path: syn::Path = syn::parse2(value.iter().cloned().collect()).ok()?;
            Some(path.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("."))
        }
        _ => None,
    })
}

#[test]
fn no_two_schema_types_share_a_name_and_the_document_has_no_other_components() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let types = schema_types(&src);
    let shared: Vec<String> = types
        .iter()
        .filter(|(_, defined)| defined.len() > 1)
        .map(|(name, defined)| format!("{name}: {}", defined.join(", ")))
        .collect();
    assert!(
        shared.is_empty(),
        "these OpenAPI schema names belong to more than one type; give each its own with #[schema(as = …)]:\n{}",
        shared.join("\n")
    );
    // The reading above must see every type the document publishes, or a
    // collision could hide where it does not look.
    let document = super::openapi();
    let components = document.components.expect("the document has components");
    assert!(components.schemas.len() > 50, "only {} components: is the document built?", components.schemas.len());
    let unseen: Vec<&String> = components.schemas.keys().filter(|name| !types.contains_key(*name)).collect();
    assert!(unseen.is_empty(), "components not found as a #[derive(ToSchema)] type in src/: {unseen:?}");
}
