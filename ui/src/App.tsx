import { Component, type ErrorInfo, lazy, type ReactNode, Suspense } from "react";
import { Redirect, Route, Switch } from "wouter";
import { Layout } from "./components/Layout";
import { Loading, Page } from "./components/Page";
import { SignIn } from "./pages/SignIn";
import { Workflows } from "./pages/Workflows";
import { SignedInProvider, useSessionQuery } from "./session";

// Everything but the first pages loads when first visited: the run form's generator and validator, the log
// viewer and the admin pages stay out of the first download.
const RunWorkflow = lazy(() => import("./pages/RunWorkflow"));
const Executions = lazy(() => import("./pages/Executions"));
const ExecutionDetail = lazy(() => import("./pages/ExecutionDetail"));
const WorkspaceErrors = lazy(() => import("./pages/WorkspaceErrors"));
const ApiKeys = lazy(() => import("./pages/ApiKeys"));
const Secrets = lazy(() => import("./pages/admin/Secrets"));
const Config = lazy(() => import("./pages/admin/Config"));
const Members = lazy(() => import("./pages/admin/Members"));
const Audit = lazy(() => import("./pages/admin/Audit"));
const Schedules = lazy(() => import("./pages/Schedules"));
const NewSchedule = lazy(() => import("./pages/Schedules").then((module) => ({ default: module.NewSchedule })));
const EditSchedule = lazy(() => import("./pages/Schedules").then((module) => ({ default: module.EditSchedule })));
const Forms = lazy(() => import("./pages/Forms"));
const FormRun = lazy(() => import("./pages/FormRun"));
const NewForm = lazy(() => import("./pages/admin/FormBuilder").then((module) => ({ default: module.NewForm })));
const EditForm = lazy(() => import("./pages/admin/FormBuilder"));

class ErrorBoundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error(error, info.componentStack);
  }

  render() {
    const { error } = this.state as { error: Error | null };
    if (!error) return this.props.children;
    return (
      <main id="main" className="sign-in">
        <div className="card problem" role="alert">
          <h1>Something went wrong</h1>
          <p>{error.message}</p>
          <button type="button" onClick={() => window.location.reload()}>
            Reload
          </button>
        </div>
      </main>
    );
  }
}

function NotFound() {
  return (
    <Page title="Not found">
      <p>There is no page here.</p>
    </Page>
  );
}

function Pages() {
  return (
    <Suspense fallback={<Loading what="the page" />}>
      <Switch>
        <Route path="/">
          <Redirect to="/workflows" replace />
        </Route>
        <Route path="/workflows" component={Workflows} />
        <Route path="/workflows/:name">{(params) => <RunWorkflow key={params.name} params={params} />}</Route>
        <Route path="/forms" component={Forms} />
        <Route path="/forms/new" component={NewForm} />
        <Route path="/forms/:id/edit">{(params) => <EditForm key={params.id} params={params} />}</Route>
        <Route path="/forms/:id">{(params) => <FormRun key={params.id} params={params} />}</Route>
        <Route path="/schedules" component={Schedules} />
        <Route path="/schedules/new" component={NewSchedule} />
        <Route path="/schedules/:id">{(params) => <EditSchedule key={params.id} params={params} />}</Route>
        <Route path="/executions" component={Executions} />
        <Route path="/executions/:id">{(params) => <ExecutionDetail key={params.id} params={params} />}</Route>
        <Route path="/workspace/errors" component={WorkspaceErrors} />
        <Route path="/keys" component={ApiKeys} />
        <Route path="/admin/secrets" component={Secrets} />
        <Route path="/admin/config" component={Config} />
        <Route path="/admin/members" component={Members} />
        <Route path="/admin/audit" component={Audit} />
        <Route component={NotFound} />
      </Switch>
    </Suspense>
  );
}

export function App() {
  const session = useSessionQuery();
  const loading = <Loading what="Bifrost" />;
  let content: ReactNode;
  if (session.isPending) content = loading;
  else if (session.error) throw session.error;
  else if (!session.data) content = <SignIn />;
  else {
    content = (
      <SignedInProvider session={session.data} loading={loading}>
        <Layout>
          <Pages />
        </Layout>
      </SignedInProvider>
    );
  }
  return content;
}

export function Root() {
  return (
    <ErrorBoundary>
      <App />
    </ErrorBoundary>
  );
}
