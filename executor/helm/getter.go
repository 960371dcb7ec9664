package helm

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// restGetter is the genericclioptions.RESTClientGetter that Helm's
// Kubernetes client and storage use, over a rest.Config that
// kubernetes.RESTConfig made (from a kubeconfig or in-cluster), with the
// release's namespace. Discovery is cached in memory until reset.
type restGetter struct {
	config    *rest.Config
	namespace string
	discovery discovery.CachedDiscoveryInterface
	mapper    *restmapper.DeferredDiscoveryRESTMapper
}

var _ genericclioptions.RESTClientGetter = (*restGetter)(nil)

// newRESTGetter builds the getter; it does not contact the API server.
func newRESTGetter(config *rest.Config, namespace string) (*restGetter, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(dc)
	return &restGetter{
		config:    config,
		namespace: namespace,
		discovery: cached,
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(cached),
	}, nil
}

// reset forgets the cached discovery, so that resource kinds installed
// since (a chart's CRDs, say) are found.
func (g *restGetter) reset() { g.mapper.Reset() }

// ToRESTConfig returns a copy of the client configuration.
func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.config), nil }

// ToDiscoveryClient returns the cached discovery client.
func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.discovery, nil
}

// ToRESTMapper returns the discovery-backed mapper, with kubectl's short
// names.
func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) {
	return restmapper.NewShortcutExpander(g.mapper, g.discovery, func(string) {}), nil
}

// ToRawKubeConfigLoader returns a loader that gives the client
// configuration and the release's namespace (Helm takes its default
// namespace from it).
func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig { return rawLoader{g} }

// rawLoader is the clientcmd.ClientConfig of a restGetter.
type rawLoader struct{ g *restGetter }

// RawConfig returns an empty kubeconfig: there is no file behind it.
func (l rawLoader) RawConfig() (clientcmdapi.Config, error) { return clientcmdapi.Config{}, nil }

// ClientConfig returns a copy of the client configuration.
func (l rawLoader) ClientConfig() (*rest.Config, error) { return rest.CopyConfig(l.g.config), nil }

// Namespace returns the release's namespace, as explicitly set.
func (l rawLoader) Namespace() (string, bool, error) { return l.g.namespace, true, nil }

// ConfigAccess returns the default loading rules; nothing is written.
func (l rawLoader) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}
