package image

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	clitypes "github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// dockerHubAuthKey is the key Docker's config.json uses for Docker Hub.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// DefaultAuthFile is Docker's credentials file: $DOCKER_CONFIG/config.json
// or ~/.docker/config.json.
func DefaultAuthFile() string {
	return filepath.Join(config.Dir(), config.ConfigFileName)
}

func loadAuthFile(path string) (*configfile.ConfigFile, error) {
	if path == "" {
		path = DefaultAuthFile()
	}
	cf := configfile.New(path)
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return cf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	defer f.Close()
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	return cf, nil
}

func authKey(registry string) string {
	if registry == "" || registry == "docker.io" || registry == name.DefaultRegistry {
		return dockerHubAuthKey
	}
	return registry
}

// keychain hands go-containerregistry the credentials stored for a
// registry, read when they are needed.
type keychain struct{ path string }

func (k keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	cf, err := loadAuthFile(k.path)
	if err != nil {
		return nil, err
	}
	ac, err := cf.GetAuthConfig(authKey(r.RegistryStr()))
	if err != nil {
		return nil, err
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" && ac.Auth == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		Auth:          ac.Auth,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	}), nil
}

// Login checks the credentials against the registry and stores them.
func Login(ctx context.Context, registry, user, password string, opts RemoteOptions) error {
	if user == "" || password == "" {
		return fmt.Errorf("login: username and password are required")
	}
	registry = strings.TrimPrefix(strings.TrimPrefix(registry, "https://"), "http://")
	registry = strings.TrimSuffix(registry, "/")
	reg, err := registryName(registry, opts.Insecure)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --tls-verify=false
	}
	rt, err := transport.NewWithContext(ctx, reg, auth, tr, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return fmt.Errorf("login %s: %w", registry, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("login %s: %w", registry, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("login %s: unauthorized: incorrect username or password", registry)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login %s: registry answered %s", registry, resp.Status)
	}
	cf, err := loadAuthFile(opts.AuthFile)
	if err != nil {
		return err
	}
	store := cf.GetCredentialsStore(authKey(registry))
	if err := store.Store(clitypes.AuthConfig{
		Username:      user,
		Password:      password,
		ServerAddress: authKey(registry),
	}); err != nil {
		return fmt.Errorf("store credentials: %w", err)
	}
	return cf.Save()
}

// Logout forgets the credentials of a registry; it reports whether there
// were any.
func Logout(registry string, opts RemoteOptions) (bool, error) {
	cf, err := loadAuthFile(opts.AuthFile)
	if err != nil {
		return false, err
	}
	key := authKey(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(registry, "https://"), "http://"), "/"))
	if _, ok := cf.AuthConfigs[key]; !ok {
		return false, nil
	}
	if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
		return true, fmt.Errorf("remove credentials: %w", err)
	}
	return true, cf.Save()
}
