//! `#[zerorpc::service]`: one trait defines a zerorpc service; the macro
//! writes its handler table (with introspection) and a typed client. Use
//! it through the `zerorpc` crate, whose documentation has the examples.
//!
//! Why a trait (as tarpc does) rather than an `impl` block: the trait is
//! the contract, and a crate that only calls the service (the typed
//! client) needs it without the implementation; the implementation is an
//! ordinary `impl` that the compiler checks against it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments,
    ReturnType, Token, TraitItem, TraitItemFn, Type, TypeParamBound,
};

/// See the `zerorpc` crate's documentation of `service`.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(attr as ServiceArgs);
    let item = syn::parse_macro_input!(item as ItemTrait);
    match expand(args, item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `#[zerorpc::service(name = "calc", namespace = "control", version = "2.0")]`.
struct ServiceArgs {
    name: Option<LitStr>,
    namespace: Option<LitStr>,
    version: Option<(u32, u32)>,
}

impl Parse for ServiceArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = ServiceArgs {
            name: None,
            namespace: None,
            version: None,
        };
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            match key.to_string().as_str() {
                "name" => args.name = Some(value),
                "namespace" => args.namespace = Some(value),
                "version" => args.version = Some(version(&value)?),
                _ => {
                    return Err(Error::new(
                        key.span(),
                        "expected `name = \"...\"`, `namespace = \"...\"` or `version = \"MAJOR.MINOR\"`",
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// `"2.0"` (or `"2"`) as `(2, 0)`.
fn version(lit: &LitStr) -> syn::Result<(u32, u32)> {
    let text = lit.value();
    let (major, minor) = text.split_once('.').unwrap_or((&text, "0"));
    let number = |t: &str| match t.bytes().all(|b| b.is_ascii_digit()) {
        true => t.parse::<u32>().ok(),
        false => None,
    };
    match (number(major), number(minor)) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(Error::new(
            lit.span(),
            "a version is MAJOR.MINOR, e.g. \"2.0\"",
        )),
    }
}

/// What kind of remote method.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Async,
    Blocking,
    Stream,
}

/// How a method's result (or a stream's item) is written.
enum Output {
    /// `T`: always a value.
    Plain(Type),
    /// `Result<T, E>`: a value, or an `ERR` (E into `ServiceError`).
    Fallible(Type),
}

impl Output {
    fn of(ty: &Type) -> Output {
        match result_ok(ty) {
            Some(ok) => Output::Fallible(ok),
            None => Output::Plain(ty.clone()),
        }
    }

    fn value_type(&self) -> &Type {
        match self {
            Output::Plain(t) | Output::Fallible(t) => t,
        }
    }
}

struct Param {
    ident: Ident,
    ty: Type,
    /// A trailing `Option<T>` the caller may leave out.
    optional: bool,
    /// The request's `Context` (not an argument on the wire).
    context: bool,
    /// `T` of `Items<T>`: the caller's stream of items (not an argument
    /// on the wire either).
    items: Option<Type>,
}

impl Param {
    /// An argument on the wire.
    fn on_wire(&self) -> bool {
        !self.context && self.items.is_none()
    }
}

struct Method {
    rust: Ident,
    wire: String,
    kind: Kind,
    params: Vec<Param>,
    output: Output,
    doc: Option<String>,
    /// The method as the trait declares it (attributes cleaned up, async
    /// rewritten to a `Send` future).
    declaration: TraitItemFn,
}

fn expand(args: ServiceArgs, mut item: ItemTrait) -> syn::Result<Tokens> {
    if !item.generics.params.is_empty() {
        return Err(Error::new(
            item.generics.span(),
            "a zerorpc service trait cannot be generic",
        ));
    }
    let trait_name = item.ident.clone();
    let service_name = args
        .name
        .map(|n| n.value())
        .unwrap_or_else(|| trait_name.to_string());
    let mut methods = Vec::new();
    for it in &item.items {
        match it {
            TraitItem::Fn(f) => methods.push(method(f)?),
            other => {
                return Err(Error::new(
                    other.span(),
                    "a zerorpc service trait has only methods",
                ))
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    for m in &methods {
        if let Some(first) = seen.insert(m.wire.clone(), m.rust.clone()) {
            return Err(Error::new(
                m.rust.span(),
                format!(
                    "two methods have the wire name `{}` (`{first}` and `{}`)",
                    m.wire, m.rust
                ),
            ));
        }
    }
    item.items = methods
        .iter()
        .map(|m| TraitItem::Fn(m.declaration.clone()))
        .collect();
    let registrations = methods.iter().map(registration);
    let namespace = args.namespace.as_ref().map(LitStr::value);
    let set_namespace = namespace
        .as_ref()
        .map(|ns| quote!(let __service = __service.namespace(#ns);));
    let set_version = args
        .version
        .map(|(major, minor)| quote!(let __service = __service.version(::zerorpc::Version::new(#major, #minor));));
    item.items.push(syn::parse_quote! {
        /// This implementation as a [`zerorpc::Service`] (its methods,
        /// their docs and argument names for introspection), ready for
        /// `Server::builder`; add dynamic methods to it as to any service.
        fn into_service(self) -> ::zerorpc::Service
        where
            Self: ::core::marker::Sized + ::core::marker::Send + ::core::marker::Sync + 'static,
        {
            let __this = ::std::sync::Arc::new(self);
            let __service = ::zerorpc::Service::new(#service_name);
            #set_namespace
            #set_version
            #(#registrations)*
            __service
        }
    });
    let client = client(
        &item,
        &service_name,
        namespace.as_deref(),
        args.version,
        &methods,
    );
    Ok(quote! {
        #item
        #client
    })
}

/// Parse one method of the trait.
fn method(f: &TraitItemFn) -> syn::Result<Method> {
    let sig = &f.sig;
    if f.default.is_some() {
        return Err(Error::new(
            f.span(),
            "a zerorpc service method has no body in the trait (write it in the impl)",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "a zerorpc service method cannot be generic: its arguments come from the wire",
        ));
    }
    let (mut wire, mut blocking, mut stream_attr) = (sig.ident.to_string(), false, false);
    let mut attrs = Vec::new();
    for attr in &f.attrs {
        if attr.path().is_ident("zerorpc") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    wire = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else if meta.path.is_ident("blocking") {
                    blocking = true;
                    Ok(())
                } else if meta.path.is_ident("stream") {
                    stream_attr = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `name = \"...\"`, `blocking` or `stream`"))
                }
            })?;
        } else {
            attrs.push(attr.clone());
        }
    }
    // &self first.
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => {
            return Err(Error::new(
                sig.span(),
                "a zerorpc service method takes `&self` first (it is shared by every request)",
            ))
        }
    }
    let mut params = Vec::new();
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            unreachable!("only the first argument can be a receiver")
        };
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(Error::new(
                pt.pat.span(),
                "name each argument (its name is what introspection shows)",
            ));
        };
        let ty = (*pt.ty).clone();
        if impl_stream_item(&ty).is_some() {
            return Err(Error::new(
                ty.span(),
                "a method takes its caller's stream of items as `zerorpc::Items<T>` (a concrete type, the same in the trait and its impl)",
            ));
        }
        params.push(Param {
            ident: pi.ident.clone(),
            context: last_segment_is(&ty, "Context"),
            optional: option_inner(&ty).is_some(),
            items: items_inner(&ty),
            ty,
        });
    }
    if params.iter().filter(|p| p.items.is_some()).count() > 1 {
        return Err(Error::new(
            sig.span(),
            "a method takes at most one stream of items (`Items<T>`)",
        ));
    }
    // Only a trailing run of Options may be left out.
    let mut trailing = true;
    for p in params.iter_mut().rev() {
        if !p.on_wire() {
            continue;
        }
        if !p.optional {
            trailing = false;
        }
        p.optional &= trailing;
    }
    let stream_item = match &sig.output {
        ReturnType::Type(_, ty) => impl_stream_item(ty),
        ReturnType::Default => None,
    };
    let kind = match (sig.asyncness.is_some(), blocking, stream_item.is_some() || stream_attr) {
        (true, false, false) => Kind::Async,
        (false, true, false) => Kind::Blocking,
        (false, false, true) => Kind::Stream,
        (true, true, _) => {
            return Err(Error::new(
                sig.span(),
                "a `blocking` method is a plain `fn` (it runs on the blocking thread pool)",
            ))
        }
        (true, _, true) => {
            return Err(Error::new(
                sig.span(),
                "a stream method is a plain `fn` returning `impl Stream<Item = T>` (the stream is the async part)",
            ))
        }
        (false, false, false) => {
            return Err(Error::new(
                sig.span(),
                "a remote method is an `async fn` (or a plain `fn` marked `#[zerorpc(blocking)]`, or one returning `impl Stream<Item = T>`)",
            ))
        }
        (false, true, true) => {
            return Err(Error::new(sig.span(), "a method is `blocking` or a stream, not both"))
        }
    };
    if kind == Kind::Blocking && params.iter().any(|p| p.items.is_some()) {
        return Err(Error::new(
            sig.span(),
            "a `blocking` method cannot take a stream of items (read them in an `async fn`)",
        ));
    }
    let unit: Type = syn::parse_quote!(());
    let output =
        match (&sig.output, kind) {
            (ReturnType::Type(_, ty), Kind::Stream) => match stream_item {
                Some(item) => Output::of(&item),
                None => return Err(Error::new(
                    ty.span(),
                    "a stream method returns `impl Stream<Item = T>` (or `Item = Result<T, E>`)",
                )),
            },
            (ReturnType::Type(_, ty), _) => Output::of(ty),
            (ReturnType::Default, _) => Output::Plain(unit),
        };
    let doc = doc_of(&attrs);
    // The declaration: an async fn becomes one returning a `Send` future
    // (the server runs it on any thread); a stream's type must be `Send`
    // and own its data.
    let mut declaration = f.clone();
    declaration.attrs = attrs;
    match kind {
        Kind::Async => {
            let out = match &sig.output {
                ReturnType::Type(_, ty) => quote!(#ty),
                ReturnType::Default => quote!(()),
            };
            declaration.sig.asyncness = None;
            declaration.sig.output = syn::parse_quote! {
                -> impl ::core::future::Future<Output = #out> + ::core::marker::Send
            };
        }
        Kind::Stream => {
            if let ReturnType::Type(_, ty) = &sig.output {
                if let Some(item) = impl_stream_item(ty) {
                    declaration.sig.output = syn::parse_quote! {
                        -> impl ::zerorpc::__private::Stream<Item = #item> + ::core::marker::Send + 'static
                    };
                }
            }
        }
        Kind::Blocking => {}
    }
    Ok(Method {
        rust: sig.ident.clone(),
        wire,
        kind,
        params,
        output,
        doc,
        declaration,
    })
}

/// The `///` lines, as one text (each line's first space removed).
fn doc_of(attrs: &[Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).to_string())
        .collect();
    let text = lines.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        Type::Reference(r) => last_segment_is(&r.elem, name),
        _ => false,
    }
}

/// The generic arguments of the last path segment of `ty`.
fn generic_args(ty: &Type) -> Vec<&GenericArgument> {
    match ty {
        Type::Path(p) => match p.path.segments.last().map(|s| &s.arguments) {
            Some(PathArguments::AngleBracketed(a)) => a.args.iter().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// `T` of `Option<T>`.
fn option_inner(ty: &Type) -> Option<Type> {
    if !last_segment_is(ty, "Option") {
        return None;
    }
    match generic_args(ty).as_slice() {
        [GenericArgument::Type(t)] => Some(t.clone()),
        _ => None,
    }
}

/// `T` of `Items<T>`.
fn items_inner(ty: &Type) -> Option<Type> {
    if !last_segment_is(ty, "Items") {
        return None;
    }
    match generic_args(ty).as_slice() {
        [GenericArgument::Type(t)] => Some(t.clone()),
        _ => None,
    }
}

/// `T` of `Result<T, E>`.
fn result_ok(ty: &Type) -> Option<Type> {
    if !last_segment_is(ty, "Result") {
        return None;
    }
    match generic_args(ty).as_slice() {
        [GenericArgument::Type(t), GenericArgument::Type(_)] => Some(t.clone()),
        _ => None,
    }
}

/// `X` of `impl Stream<Item = X> + ...`.
fn impl_stream_item(ty: &Type) -> Option<Type> {
    let Type::ImplTrait(it) = ty else { return None };
    it.bounds.iter().find_map(|b| match b {
        TypeParamBound::Trait(t) => {
            let seg = t.path.segments.last()?;
            if seg.ident != "Stream" {
                return None;
            }
            match &seg.arguments {
                PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
                    GenericArgument::AssocType(at) if at.ident == "Item" => Some(at.ty.clone()),
                    _ => None,
                }),
                _ => None,
            }
        }
        _ => None,
    })
}

/// The registration of one method in `into_service`.
fn registration(m: &Method) -> Tokens {
    let wire = &m.wire;
    let rust = &m.rust;
    let args: Vec<&Param> = m.params.iter().filter(|p| p.on_wire()).collect();
    let names: Vec<String> = args.iter().map(|p| p.ident.to_string()).collect();
    let required = args.iter().filter(|p| !p.optional).count();
    // Introspection: optional arguments show a `None` default, as Python's.
    let arg_specs: Vec<String> = args
        .iter()
        .map(|p| {
            if p.optional {
                format!("{}=null", p.ident)
            } else {
                p.ident.to_string()
            }
        })
        .collect();
    let idents: Vec<&Ident> = args.iter().map(|p| &p.ident).collect();
    let reads = args.iter().map(|p| {
        let (ident, ty, name) = (&p.ident, &p.ty, p.ident.to_string());
        let span = p.ty.span();
        if p.optional {
            let inner = option_inner(ty).expect("checked");
            quote_spanned!(span=> let #ident: #ty = __r.optional::<#inner>(#name)?;)
        } else {
            quote_spanned!(span=> let #ident: #ty = __r.arg::<#ty>(#name)?;)
        }
    });
    let call_args = m.params.iter().map(|p| {
        let ident = &p.ident;
        if p.context {
            quote!(::zerorpc::__private::context())
        } else if p.items.is_some() {
            quote!(__items)
        } else {
            quote!(#ident)
        }
    });
    let items = m.params.iter().find_map(|p| p.items.as_ref());
    let value_ty = m.output.value_type();
    let out_span = value_ty.span();
    let finish = match (&m.output, m.kind) {
        (Output::Fallible(_), Kind::Stream) => {
            quote_spanned!(out_span=> ::core::result::Result::Ok(::zerorpc::__private::fallible_stream(__out)))
        }
        (Output::Plain(_), Kind::Stream) => {
            quote_spanned!(out_span=> ::core::result::Result::Ok(::zerorpc::__private::plain_stream(__out)))
        }
        (Output::Fallible(_), _) => {
            quote_spanned!(out_span=> ::zerorpc::__private::fallible_value(__out))
        }
        (Output::Plain(_), _) => quote_spanned!(out_span=> ::zerorpc::__private::value(__out)),
    };
    let run = match (m.kind, items) {
        (Kind::Async, Some(t)) => quote! {
            let (__items, __failed) = ::zerorpc::__private::items::<#t>(&__args);
            ::std::boxed::Box::pin(async move {
                let __out = ::zerorpc::__private::unless_failed(
                    __failed, __s.#rust(#(#call_args),*),
                ).await?;
                #finish
            })
        },
        (Kind::Stream, Some(t)) => quote! {
            let (__items, __failed) = ::zerorpc::__private::items::<#t>(&__args);
            let __out = __s.#rust(#(#call_args),*);
            let __reply = #finish.map(|r| ::zerorpc::__private::guard_reply(__failed, r));
            ::std::boxed::Box::pin(::core::future::ready(__reply))
        },
        (Kind::Async, None) => quote! {
            ::std::boxed::Box::pin(async move {
                let __out = __s.#rust(#(#call_args),*).await;
                #finish
            })
        },
        (Kind::Blocking, _) => quote! {
            ::std::boxed::Box::pin(async move {
                let __out = ::zerorpc::__private::blocking(move || __s.#rust(#(#call_args),*)).await?;
                #finish
            })
        },
        (Kind::Stream, None) => quote! {
            {
                let __out = __s.#rust(#(#call_args),*);
                ::std::boxed::Box::pin(::core::future::ready(#finish))
            }
        },
    };
    let register = match items {
        Some(_) => quote!(::zerorpc::__private::register_taking_items),
        None => quote!(::zerorpc::__private::register),
    };
    let doc = match &m.doc {
        Some(d) => quote!(::core::option::Option::Some(#d)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        let __service = {
            let __s = __this.clone();
            #register(
                __service,
                #wire,
                &[#(#arg_specs),*],
                #doc,
                move |__args: ::zerorpc::Args| -> ::zerorpc::__private::Handled {
                    let __decoded = (|| -> ::core::result::Result<_, ::zerorpc::ServiceError> {
                        let mut __r = ::zerorpc::__private::ArgReader::new(
                            #wire, &__args, &[#(#names),*], #required,
                        )?;
                        #(#reads)*
                        __r.done()?;
                        ::core::result::Result::Ok((#(#idents,)*))
                    })();
                    let (#(#idents,)*) = match __decoded {
                        ::core::result::Result::Ok(v) => v,
                        ::core::result::Result::Err(e) => return ::zerorpc::__private::failed(e),
                    };
                    let __s = __s.clone();
                    #run
                },
            )
        };
    }
}

/// The typed client: one async method per remote method.
fn client(
    item: &ItemTrait,
    service: &str,
    namespace: Option<&str>,
    version: Option<(u32, u32)>,
    methods: &[Method],
) -> Tokens {
    let vis = &item.vis;
    let trait_name = &item.ident;
    let name = format_ident!("{}Client", trait_name);
    let doc = format!(
        "A typed client of the `{service}` service ([`{trait_name}`]): one method per remote \
         method, over a [`zerorpc::Client`]."
    );
    let methods = methods.iter().map(client_method);
    let prefix = match namespace {
        Some(ns) => quote!(::core::option::Option::Some(::std::string::String::from(#ns))),
        None => quote!(::core::option::Option::None),
    };
    let options = match version {
        Some((major, minor)) => quote! {
            ::zerorpc::CallOptions::default().api_version(::zerorpc::Version::new(#major, #minor))
        },
        None => quote!(::zerorpc::CallOptions::default()),
    };
    quote! {
        #[doc = #doc]
        #[derive(Clone)]
        #vis struct #name {
            client: ::zerorpc::Client,
            options: ::zerorpc::CallOptions,
            namespace: ::core::option::Option<::std::string::String>,
        }

        impl #name {
            /// Call the service through `client` (under the trait's
            /// namespace and requiring its version, when it declares them).
            #vis fn new(client: ::zerorpc::Client) -> Self {
                Self { client, options: #options, namespace: #prefix }
            }

            /// The same client, its calls made with `options` (a timeout,
            /// header keys, a version).
            #vis fn with_options(&self, options: ::zerorpc::CallOptions) -> Self {
                Self { client: self.client.clone(), options, namespace: self.namespace.clone() }
            }

            /// The same client, calling the methods under `namespace`
            /// (`namespace.method`), or without a prefix for `None` (the
            /// service is a server's default one).
            #vis fn with_namespace(&self, namespace: ::core::option::Option<&str>) -> Self {
                Self {
                    client: self.client.clone(),
                    options: self.options.clone(),
                    namespace: namespace.map(::std::string::String::from),
                }
            }

            /// A method's name on the wire.
            fn __wire_name(&self, method: &'static str) -> ::std::borrow::Cow<'static, str> {
                match &self.namespace {
                    ::core::option::Option::Some(ns) => {
                        ::std::borrow::Cow::Owned(::std::format!("{ns}.{method}"))
                    }
                    ::core::option::Option::None => ::std::borrow::Cow::Borrowed(method),
                }
            }

            /// The underlying client (for dynamic calls).
            #vis fn client(&self) -> &::zerorpc::Client {
                &self.client
            }

            #(#methods)*
        }
    }
}

fn client_method(m: &Method) -> Tokens {
    let (rust, wire) = (&m.rust, &m.wire);
    let args: Vec<&Param> = m.params.iter().filter(|p| p.on_wire()).collect();
    // The caller's items: any stream of them, sent as the server asks.
    let items = m.params.iter().find(|p| p.items.is_some());
    let decl = args
        .iter()
        .map(|p| {
            let (ident, ty) = (&p.ident, &p.ty);
            quote!(#ident: #ty)
        })
        .chain(items.map(|p| {
            let (ident, t) = (&p.ident, p.items.as_ref().expect("an items parameter"));
            quote! {
                #ident: impl ::zerorpc::__private::Stream<Item = #t> + ::core::marker::Send + 'static
            }
        }));
    let value_ty = m.output.value_type();
    let doc = m.doc.clone().unwrap_or_default();
    let idents: Vec<&Ident> = args.iter().map(|p| &p.ident).collect();
    let has_optional = args.iter().any(|p| p.optional);
    // The arguments: a tuple (encoded in place), or, with optional ones,
    // values up to the last one given.
    let wire_args = if has_optional {
        let pushes = args.iter().map(|p| {
            let ident = &p.ident;
            if p.optional {
                quote!(::zerorpc::__private::Arg::Optional(::zerorpc::__private::to_value_opt(&#ident)?))
            } else {
                quote!(::zerorpc::__private::Arg::Given(::zerorpc::__private::to_value(&#ident)?))
            }
        });
        quote!(::zerorpc::__private::trailing(::std::vec![#(#pushes),*]))
    } else {
        quote!((#(#idents,)*))
    };
    // Serde bounds checked where the types are written, so a type that
    // cannot travel is reported there.
    let checks = args
        .iter()
        .map(|p| {
            let ty = &p.ty;
            quote_spanned!(ty.span()=> ::zerorpc::__private::sendable::<#ty>();)
        })
        .chain(items.map(|p| {
            let t = p.items.as_ref().expect("an items parameter");
            quote_spanned!(t.span()=> ::zerorpc::__private::sendable::<#t>();)
        }))
        .chain(std::iter::once({
            quote_spanned!(value_ty.span()=> ::zerorpc::__private::receivable::<#value_ty>();)
        }));
    let span = Span::call_site();
    if let Some(p) = items {
        let ident = &p.ident;
        let (returns, call) = match m.kind {
            Kind::Stream => (
                quote!(::zerorpc::ReplyStream<#value_ty>),
                quote!(bidi_stream_with),
            ),
            _ => (quote!(#value_ty), quote!(client_stream_with)),
        };
        return quote_spanned! {span=>
            #[doc = #doc]
            pub async fn #rust(&self, #(#decl),*)
                -> ::core::result::Result<#returns, ::zerorpc::Error>
            {
                #(#checks)*
                self.client.#call(&self.__wire_name(#wire), #wire_args, #ident, self.options.clone()).await
            }
        };
    }
    match m.kind {
        Kind::Stream => quote_spanned! {span=>
            #[doc = #doc]
            pub async fn #rust(&self, #(#decl),*)
                -> ::core::result::Result<::zerorpc::ReplyStream<#value_ty>, ::zerorpc::Error>
            {
                #(#checks)*
                self.client.stream_with(&self.__wire_name(#wire), #wire_args, self.options.clone()).await
            }
        },
        _ => quote_spanned! {span=>
            #[doc = #doc]
            pub async fn #rust(&self, #(#decl),*)
                -> ::core::result::Result<#value_ty, ::zerorpc::Error>
            {
                #(#checks)*
                self.client.call_with(&self.__wire_name(#wire), #wire_args, self.options.clone()).await
            }
        },
    }
}
