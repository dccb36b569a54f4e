//! `#[derive_phases]`, put on an `impl Plugin for T` block (above `#[async_trait]`), writes its
//! `fn phases()` from the phase methods the block defines, so the set the chain uses to skip
//! no-op calls cannot drift from the code.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ImplItem, ItemImpl};

/// The phase methods and the `Phases` constant each one sets.
const PHASES: [(&str, &str); 6] = [
    ("rewrite", "REWRITE"),
    ("access", "ACCESS"),
    ("before_proxy", "BEFORE_PROXY"),
    ("header_filter", "HEADER_FILTER"),
    ("body_filter", "BODY_FILTER"),
    ("log", "LOG"),
];

#[proc_macro_attribute]
pub fn derive_phases(_args: TokenStream, input: TokenStream) -> TokenStream {
    let mut block = parse_macro_input!(input as ItemImpl);
    let mut phases = Vec::new();
    for item in &block.items {
        let ImplItem::Fn(method) = item else { continue };
        let name = method.sig.ident.to_string();
        if name == "phases" {
            return syn::Error::new_spanned(&method.sig, "#[derive_phases] writes `phases` itself: remove this one")
                .to_compile_error()
                .into();
        }
        if let Some((_, constant)) = PHASES.iter().find(|(method, _)| *method == name) {
            phases.push(syn::Ident::new(constant, proc_macro2::Span::call_site()));
        }
    }
    let method: ImplItem = syn::parse_quote! {
        fn phases(&self) -> ::switchyard_sdk::Phases {
            ::switchyard_sdk::Phases::NONE #( .with(::switchyard_sdk::Phases::#phases) )*
        }
    };
    block.items.push(method);
    quote!(#block).into()
}
