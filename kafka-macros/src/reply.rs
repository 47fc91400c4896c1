//! What a handler's return value sends: nothing (it is a handler result) or replies.
//!
//! The shapes `Result<R, E>` (`R` not `()`), `Option<T>`, `Vec<T>` and `Reply<T>` are read
//! from the syntax; any other type is decided by the runtime's `Probe` where the type is
//! concrete, so that an alias of `Result<(), E>` stays a handler result.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericArgument, PathArguments, ReturnType, Type};

/// How the handler's return type is handled.
pub(crate) enum Returns<'a> {
    /// `()`, written or not, or `Result<(), E>`: no reply.
    HandlerResult,
    /// Replies, or for a type of no known shape, whatever the probe decides.
    Reply(&'a Type),
}

pub(crate) fn returns(output: &ReturnType) -> Returns<'_> {
    let ReturnType::Type(_, ty) = output else {
        return Returns::HandlerResult;
    };
    if is_unit(ty) {
        return Returns::HandlerResult;
    }
    match shape(ty) {
        Some(("Result", Some(ok))) if is_unit(ok) => Returns::HandlerResult,
        _ => Returns::Reply(ty),
    }
}

/// Whether `ty` has a shape that can only be a reply (not decided by the probe).
pub(crate) fn is_reply_shape(ty: &Type) -> bool {
    matches!(shape(ty), Some((_, Some(_))))
}

/// The expression that finishes a call whose return value `__result` is of type `ty`, with the
/// request's `__reply`: the handler's `Result<(), HandlerError>`, replies sent.
pub(crate) fn finish(ty: &Type) -> TokenStream {
    match shape(ty) {
        Some(("Result", Some(ok))) => {
            let push = push(ok, &quote!(__ok), 0);
            quote! {
                match __result {
                    ::core::result::Result::Ok(__ok) => {
                        let mut __reply = __reply;
                        #push
                        __reply.send().await
                    }
                    ::core::result::Result::Err(__error) => {
                        ::kafka_runtime::__private::IntoHandlerResult::into_handler_result(
                            ::core::result::Result::<(), _>::Err(__error),
                        )
                    }
                }
            }
        }
        Some(("Option" | "Vec" | "Reply", Some(_))) => {
            let push = push(ty, &quote!(__result), 0);
            quote! {{
                let mut __reply = __reply;
                #push
                __reply.send().await
            }}
        }
        _ => {
            // Autoref specialization: a handler result is found one reference earlier than a
            // `Serialize` value.
            // At the type: one that is neither is reported there.
            let finish = quote_spanned! {ty.span()=>
                (&&::kafka_runtime::__private::Probe::of(&__result))
                    .reply_kind()
                    .finish(__result, __reply)
            };
            quote! {{
                #[allow(unused_imports)]
                use ::kafka_runtime::__private::{ViaHandlerResult as _, ViaReply as _};
                #finish.send().await
            }}
        }
    }
}

/// The statements that add the replies of `value`, of type `ty`, to `__reply`.
fn push(ty: &Type, value: &TokenStream, depth: usize) -> TokenStream {
    let item = quote::format_ident!("__item{}", depth);
    match shape(ty) {
        Some(("Option", Some(inner))) => {
            let push = push(inner, &quote!(#item), depth + 1);
            quote!(if let ::core::option::Option::Some(#item) = #value { #push })
        }
        Some(("Vec", Some(inner))) if !is_u8(inner) => {
            let push = push(inner, &quote!(#item), depth + 1);
            quote!(for #item in #value { #push })
        }
        // The type named at the user's token: a type that cannot be a reply is reported there.
        Some(("Reply", Some(inner))) => quote_spanned! {inner.span()=>
            ::kafka_runtime::__private::ReplyTo::record::<#inner>(&mut __reply, #value);
        },
        _ => quote_spanned! {ty.span()=>
            ::kafka_runtime::__private::ReplyTo::value::<#ty>(&mut __reply, &#value);
        },
    }
}

/// The last path segment's name and its first type argument: `("Option", Some(T))`.
fn shape(ty: &Type) -> Option<(&'static str, Option<&Type>)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let name = ["Result", "Option", "Vec", "Reply"]
        .into_iter()
        .find(|name| segment.ident == name)?;
    let first = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        }),
        _ => None,
    };
    Some((name, first))
}

fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(tuple) => tuple.elems.is_empty(),
        Type::Paren(paren) => is_unit(&paren.elem),
        _ => false,
    }
}

fn is_u8(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("u8"))
}
