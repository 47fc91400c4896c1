//! Code generation: the handler's invoker, its startup check, and its registration.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::attr::ListenerArgs;
use crate::reply::{self, Returns};

pub(crate) fn kafka_listener(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    match expand(args, &function) {
        Ok(tokens) => tokens,
        // Keep the function as written, so that its body still type-checks and IDEs keep working.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#function #error)
        }
    }
}

struct Argument<'a> {
    name: String,
    ty: &'a Type,
}

fn expand(args: TokenStream, function: &ItemFn) -> syn::Result<TokenStream> {
    let args: ListenerArgs = syn::parse2(args)?;
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "`#[kafka_listener]` functions must be `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "`#[kafka_listener]` functions must not be generic: each argument's extractor is chosen from its concrete type",
        ));
    }
    let arguments = arguments(function)?;
    let batch = args.batch.as_ref().map_or_else(
        || {
            arguments.iter().any(|argument| {
                last_segment(argument.ty)
                    .is_some_and(|s| s.ident == "Batch" || s.ident == "BatchAck")
            })
        },
        |batch| batch.value,
    );
    let (context, extract, from, invoker) = if batch {
        (
            quote!(BatchContext),
            quote!(from_batch),
            quote!(FromBatch),
            quote!(Batch),
        )
    } else {
        (
            quote!(RecordContext),
            quote!(from_record),
            quote!(FromRecord),
            quote!(Record),
        )
    };

    let name = &sig.ident;
    let invoke = format_ident!("__kafka_listener_invoke_{}", name);
    let check = format_ident!("__kafka_listener_check_{}", name);
    let vars: Vec<_> = (0..arguments.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();

    let extractions = arguments.iter().zip(&vars).map(|(argument, var)| {
        let ty = argument.ty;
        let arg_name = &argument.name;
        // Spelled like the registration's other uses of the trait, at the same token: an
        // argument that is not an extractor is reported once.
        let extract = quote_spanned! {ty.span()=>
            <#ty as ::kafka_runtime::__private::#from>::#extract(__ctx)
        };
        quote! {
            let #var = match #extract {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(rejection) => {
                    return ::kafka_runtime::__private::Invocation::Rejected(rejection.for_argument(#arg_name));
                }
            };
        }
    });
    let payload_checks = arguments.iter().filter_map(|argument| {
        let inner = payload_type(argument.ty)?;
        Some(quote_spanned! {inner.span()=>
            const _: () = ::kafka_runtime::__private::assert_deserializable::<#inner>();
        })
    });
    let types: Vec<&Type> = arguments.iter().map(|a| a.ty).collect();
    let ack_checks = ack_checks(&args, &types, &from);
    let replies = replies(&args, &sig.output, batch)?;
    let (reply_to, call_result) = match replies {
        Some(ty) => (
            quote!(let __reply = ::kafka_runtime::__private::ReplyTo::of(__ctx);),
            reply::finish(ty),
        ),
        None => (TokenStream::new(), handler_result(&sig.output)),
    };

    let name_str = name.to_string();
    // At the function's name: a handler whose future is not `Send` is reported there.
    let boxed = quote_spanned! {name.span()=> ::kafka_runtime::__private::boxed_handler};
    let future = quote_spanned! {name.span()=>
        async move {
            let __result = #name(#(#vars),*).await;
            #call_result
        }
    };
    let id = match &args.id {
        Some(id) => quote!(#id),
        None => quote!(#name_str),
    };
    let topics = &args.topics;
    let group = option(args.group.as_ref().map(|g| quote!(#g)));
    let topic_pattern = option(args.topic_pattern.as_ref().map(|p| quote!(#p)));
    let partitions = option(args.partitions.as_ref().map(|p| quote!(#p)));
    let initial_offset = option(args.initial_offset.as_ref().map(|o| quote!(#o)));
    let dedupe = option(args.dedupe.as_ref().map(|d| quote!(#d)));
    let concurrency = option(args.concurrency.as_ref().map(|c| quote!(#c)));
    let ack_mode = option(
        args.ack_mode
            .as_ref()
            .map(|variant| quote!(::kafka_runtime::__private::AckMode::#variant)),
    );
    let ordering = option(
        args.ordering
            .as_ref()
            .map(|variant| quote!(::kafka_runtime::Ordering::#variant)),
    );
    let placeholder_keys = args.placeholders.iter().map(|(key, _)| key);
    let placeholder_texts = args.placeholders.iter().map(|(_, text)| text);
    let send_to = option(args.send_to.as_ref().map(|topic| quote!(#topic)));
    // At the user's path: a function of another signature is reported there.
    let filter = option(args.filter.as_ref().map(|path| {
        quote_spanned! {path.span()=> {
            const FILTER: ::kafka_runtime::RecordFilter = #path;
            FILTER
        }}
    }));
    let auto_startup = match &args.auto_startup {
        Some(value) => quote!(#value),
        None => quote!(true),
    };

    Ok(quote! {
        #function

        #(#payload_checks)*

        #ack_checks

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #invoke(
            __ctx: &mut ::kafka_runtime::__private::#context<'_>,
        ) -> ::kafka_runtime::__private::Invocation {
            #reply_to
            #(#extractions)*
            ::kafka_runtime::__private::Invocation::Run(#boxed(#future))
        }

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #check(
            __app: &::kafka_runtime::AppContext,
        ) -> ::core::result::Result<(), ::std::string::String> {
            #(<#types as ::kafka_runtime::__private::#from>::check(__app)?;)*
            ::core::result::Result::Ok(())
        }

        ::kafka_runtime::__private::inventory::submit! {
            ::kafka_runtime::__private::ListenerRegistration::new(
                ::kafka_runtime::__private::ListenerDeclaration {
                    id: #id,
                    function: ::core::concat!(::core::module_path!(), "::", #name_str),
                    topics: &[#(#topics),*],
                    topic_pattern: #topic_pattern,
                    partitions: #partitions,
                    initial_offset: #initial_offset,
                    group: #group,
                    concurrency: #concurrency,
                    ack_mode: #ack_mode,
                    ordering: #ordering,
                    auto_startup: #auto_startup,
                    takes_ack: false #(|| <#types as ::kafka_runtime::__private::#from>::TAKES_ACK)*,
                    send_to: #send_to,
                    filter: #filter,
                    dedupe: #dedupe,
                    placeholders: &[#((#placeholder_keys, #placeholder_texts)),*],
                    invoke: ::kafka_runtime::__private::Invoker::#invoker(#invoke),
                    check: #check,
                }
            )
        }
    })
}

/// The type whose value the handler replies with, if it replies; errors at `send_to` or the
/// return type where replies cannot be.
fn replies<'a>(
    args: &ListenerArgs,
    output: &'a ReturnType,
    batch: bool,
) -> syn::Result<Option<&'a Type>> {
    let returns = reply::returns(output);
    if batch {
        if let Some(dedupe) = &args.dedupe {
            return Err(syn::Error::new(
                dedupe.span(),
                "`dedupe` is for record listeners; a batch listener skips records in its handler",
            ));
        }
        if let Some(send_to) = &args.send_to {
            return Err(syn::Error::new(
                send_to.span(),
                "`send_to` is for record listeners; a batch listener sends with a `KafkaTemplate` argument",
            ));
        }
        return match returns {
            Returns::Reply(ty) if reply::is_reply_shape(ty) => Err(syn::Error::new_spanned(
                ty,
                "a batch listener does not reply: it returns `()` or `Result<(), E>`",
            )),
            _ => Ok(None),
        };
    }
    match returns {
        Returns::Reply(ty) => Ok(Some(ty)),
        Returns::HandlerResult => match &args.send_to {
            Some(send_to) => Err(syn::Error::new(
                send_to.span(),
                "`send_to` sends the handler's return value, and this handler returns none: return the reply, e.g. `Result<T, E>` with `T: Serialize`",
            )),
            None => Ok(None),
        },
    }
}

/// The expression that turns a handler result `__result` (`()` or `Result<(), E>`) into the
/// container's.
fn handler_result(output: &ReturnType) -> TokenStream {
    match output {
        ReturnType::Default => quote!({
            let () = __result;
            ::core::result::Result::Ok(())
        }),
        ReturnType::Type(_, ty) => quote_spanned! {ty.span()=>
            ::kafka_runtime::__private::IntoHandlerResult::into_handler_result(__result)
        },
    }
}

/// Compile-time checks of the `Ack` arguments, by type (an alias or a custom extractor that
/// takes the `Ack` counts): at most one, and, when `ack_mode` is written in the attribute, one
/// exactly in the manual modes and none in the others. Each fails at the user's token.
fn ack_checks(args: &ListenerArgs, types: &[&Type], from: &TokenStream) -> TokenStream {
    let takes_ack = |ty: &Type| quote!(<#ty as ::kafka_runtime::__private::#from>::TAKES_ACK);
    let mut checks = Vec::new();
    for (index, ty) in types.iter().enumerate().skip(1) {
        let earlier = types[..index].iter().map(|earlier| takes_ack(earlier));
        let this = takes_ack(ty);
        checks.push(quote_spanned! {ty.span()=>
            const _: () = ::core::assert!(
                !(#this && (false #(|| #earlier)*)),
                "only one `Ack` argument: a record is acknowledged once"
            );
        });
    }
    if let Some(mode) = &args.ack_mode {
        let manual = mode.to_string().starts_with("Manual");
        let any = types.iter().map(|ty| takes_ack(ty));
        if manual {
            checks.push(quote_spanned! {mode.span()=>
                const _: () = ::core::assert!(
                    false #(|| #any)*,
                    "a manual ack mode needs an `Ack` argument: without one no record would ever be committed"
                );
            });
        } else {
            for ty in types {
                let this = takes_ack(ty);
                checks.push(quote_spanned! {ty.span()=>
                    const _: () = ::core::assert!(
                        !#this,
                        "an `Ack` argument needs ack_mode = \"manual\" or \"manual_immediate\"; in the other modes records are acknowledged for the handler"
                    );
                });
            }
        }
    }
    quote!(#(#checks)*)
}

fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// The arguments, with the checks that need the syntax: no `self`, no `impl Trait`.
fn arguments(function: &ItemFn) -> syn::Result<Vec<Argument<'_>>> {
    let mut arguments = Vec::new();
    for (index, input) in function.sig.inputs.iter().enumerate() {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "`#[kafka_listener]` must be on a free function, not a method: there is no `self` to call it on",
                ))
            }
            FnArg::Typed(typed) => typed,
        };
        if let Type::ImplTrait(ty) = &*typed.ty {
            return Err(syn::Error::new_spanned(
                ty,
                "`#[kafka_listener]` arguments need concrete types, not `impl Trait`",
            ));
        }
        arguments.push(Argument {
            name: pattern_name(&typed.pat).unwrap_or_else(|| format!("#{}", index + 1)),
            ty: &typed.ty,
        });
    }
    Ok(arguments)
}

/// `event` for `event: T`, `Payload(event): ...`, `mut event: T`.
fn pattern_name(pat: &Pat) -> Option<String> {
    match pat {
        Pat::Ident(ident) => Some(ident.ident.to_string()),
        Pat::TupleStruct(tuple) if tuple.elems.len() == 1 => {
            tuple.elems.first().and_then(pattern_name)
        }
        Pat::Reference(reference) => pattern_name(&reference.pat),
        _ => None,
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

/// `T` of `Payload<T>`.
fn payload_type(ty: &Type) -> Option<&Type> {
    let segment = last_segment(ty)?;
    if segment.ident != "Payload" {
        return None;
    }
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        }),
        _ => None,
    }
}
